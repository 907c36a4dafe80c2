// Where a JSON text stops being JSON, and why, in words: JSON.parse only says that it is not (its
// message names a position for some mistakes, quotes the source for others, and differs between Node
// versions). Iterative, so deep nesting cannot overflow the stack. Called only after JSON.parse failed.

export interface JsonSyntaxError {
  /** offset in the text (UTF-16 code units) */
  offset: number;
  message: string;
}

const WS = new Set([' ', '\t', '\n', '\r']);

/** A character as it can be shown on one line: printable as itself, anything else as U+XXXX. */
export function showChar(c: string | undefined): string {
  if (c === undefined) return 'the end of the file';
  const code = c.codePointAt(0)!;
  return code < 0x20 || (code >= 0x7f && code < 0xa0) || code === 0xfeff ? `U+${code.toString(16).toUpperCase().padStart(4, '0')}` : `"${c}"`;
}

/** The first syntax error of `text`, or null when it is valid JSON. */
export function findJsonSyntaxError(text: string): JsonSyntaxError | null {
  let i = 0;
  const fail = (message: string, at = i): JsonSyntaxError => ({ offset: at, message });
  const skip = () => {
    while (i < text.length && WS.has(text[i])) i++;
  };
  // what is expected next: a value, or (inside a container) the punctuation after one
  type Frame = '{' | '[';
  const stack: Frame[] = [];

  const string = (): JsonSyntaxError | null => {
    const start = i++;
    for (;;) {
      if (i >= text.length) return fail('a string is not closed (a " is missing)', start);
      const c = text[i];
      if (c === '"') {
        i++;
        return null;
      }
      if (c === '\\') {
        const e = text[i + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) return fail('\\u must be followed by 4 hexadecimal digits');
          i += 6;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) i += 2;
        else return fail(`${showChar(e)} cannot follow a backslash in a string`, i + 1);
        continue;
      }
      if (c.charCodeAt(0) < 0x20) return fail(`the control character ${showChar(c)} must be written as an escape (\\n, \\t, \\u0000) inside a string`);
      i++;
    }
  };
  const number = (): JsonSyntaxError | null => {
    const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(i, i + 400));
    if (!m || m[0] === '-') return fail('a number is malformed');
    i += m[0].length;
    return null;
  };
  /** One value that does not open a container; or opens one (pushes it). */
  const value = (): JsonSyntaxError | null => {
    const c = text[i];
    if (c === '{' || c === '[') {
      stack.push(c);
      i++;
      return null;
    }
    if (c === '"') return string();
    if (c === '-' || (c >= '0' && c <= '9')) return number();
    for (const word of ['true', 'false', 'null']) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return null;
      }
    }
    if (c === "'") return fail('strings must be in double quotes');
    return fail(c === undefined ? 'the file ends where a value is expected' : `${showChar(c)} cannot start a value`);
  };

  skip();
  if (i === text.length) return fail('the file is empty');
  let err = value();
  if (err) return err;
  // after a value or an opening bracket: close the containers, one element at a time
  let justOpened = stack.length > 0;
  while (stack.length) {
    skip();
    const top = stack[stack.length - 1];
    const close = top === '{' ? '}' : ']';
    if (justOpened && text[i] === close) {
      stack.pop();
      i++;
      justOpened = false;
      continue;
    }
    if (!justOpened) {
      if (text[i] === close) {
        stack.pop();
        i++;
        continue;
      }
      if (text[i] !== ',') return fail(`expected "," or "${close}" here, not ${showChar(text[i])}`);
      i++;
      skip();
      if (text[i] === close) return fail(`a "," before "${close}" (trailing commas are not JSON)`);
    }
    if (top === '{') {
      if (text[i] !== '"') return fail(`expected a field name in double quotes, not ${showChar(text[i])}`);
      err = string();
      if (err) return err;
      skip();
      if (text[i] !== ':') return fail(`expected ":" after the field name, not ${showChar(text[i])}`);
      i++;
      skip();
    }
    const depth = stack.length;
    err = value();
    if (err) return err;
    justOpened = stack.length > depth;
  }
  skip();
  if (i < text.length) return fail(`${showChar(text[i])} after the end of the JSON value`);
  return null;
}
