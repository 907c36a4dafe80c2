// One rule for every string a client sends: it must be storable text. No NUL (U+0000): PostgreSQL text
// and jsonb cannot hold it, a shell cannot pass it, and no name, script, command or key needs it. No
// unpaired surrogate (\uD800–\uDFFF alone, which JSON can carry): jsonb refuses it and UTF-8 cannot say it. Pure.

const MAX_REPORTED = 100;
/** A high surrogate not followed by a low one, or a low one not preceded by a high one. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
const ANY_SURROGATE = /[\uD800-\uDFFF]/;

export const NUL_MESSAGE = 'must not contain NUL (\\u0000)';
export const SURROGATE_MESSAGE = 'must be valid Unicode text (it holds an unpaired surrogate, \\uD800 to \\uDFFF)';

/** Why this string cannot be taken as text, or null. */
export function stringProblem(s: string): string | null {
  if (s.includes('\0')) return NUL_MESSAGE;
  if (ANY_SURROGATE.test(s) && new RegExp(LONE_SURROGATE.source).test(s)) return SURROGATE_MESSAGE; // the quick scan first
  return null;
}

/**
 * Every string inside `value` that is not storable text, with its field path ("tests[2].services[0].command",
 * "idempotencyKey"), in input order (at most 100). Walks plain objects and arrays (GraphQL input objects
 * too), without recursion: any depth is walked.
 */
export function badStrings(value: unknown): { field: string; message: string }[] {
  const out: { field: string; message: string }[] = [];
  const stack: [unknown, string][] = [[value, '']];
  while (stack.length && out.length < MAX_REPORTED) {
    const [v, path] = stack.pop()!;
    if (typeof v === 'string') {
      const message = stringProblem(v);
      if (message) out.push({ field: path || '(input)', message });
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], `${path}[${i}]`]);
    } else if (v !== null && typeof v === 'object') {
      const entries = Object.entries(v);
      for (let i = entries.length - 1; i >= 0; i--) stack.push([entries[i][1], path ? `${path}.${entries[i][0]}` : entries[i][0]]);
    }
  }
  return out;
}

/** A string fit to quote in a message: NUL and unpaired surrogates as U+FFFD. */
export function quotable(s: string): string {
  return s.replace(/\0/g, '\uFFFD').replace(LONE_SURROGATE, '\uFFFD');
}
