// A test's output is bytes; a result row and a GraphQL String are text. Pure: how one becomes the other.
//
// The text is the UTF-8 decoding of the bytes with every invalid sequence replaced by U+FFFD (the WHATWG
// "maximal subpart" rule, as Buffer#toString does) and every NUL byte replaced by U+FFFD too (PostgreSQL
// text and jsonb cannot hold NUL). Such text is *not byte-exact*: the exact bytes are kept elsewhere (the
// stdout.log / stderr.log artifact) and the text says so in a last line.

import { isUtf8 } from 'node:buffer';

export const REPLACEMENT = '\uFFFD';

/** NUL (U+0000) made safe for a text column: U+FFFD. */
export function withoutNul(text: string): string {
  return text.includes('\0') ? text.replace(/\0/g, REPLACEMENT) : text;
}

/** true when `decodeOutput(bytes)` gives back exactly these bytes when encoded again. */
export function isExactText(bytes: Uint8Array): boolean {
  return !bytes.includes(0) && isUtf8(bytes);
}

/** The bytes as safe text: valid UTF-8, no NUL (both replaced by U+FFFD). */
export function decodeOutput(bytes: Uint8Array): string {
  return withoutNul(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
}

/**
 * Where a chunk of a stream may be cut so that no UTF-8 sequence is split: the index of the first byte
 * of an incomplete sequence at its end (the bytes from there belong to the next chunk), or its length.
 * Only a sequence that could still become valid is held back (at most 3 bytes).
 */
export function completeUtf8Length(bytes: Uint8Array): number {
  const n = bytes.length;
  for (let back = 1; back <= Math.min(3, n); back++) {
    const b = bytes[n - back];
    if ((b & 0xc0) === 0x80) continue; // a continuation byte: look further back for its lead
    const need = b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 1;
    return need > back ? n - back : n;
  }
  return n;
}

export interface RowOutput {
  /** Safe text for the result row (a GraphQL String). */
  text: string;
  /** The text is exactly the bytes (valid UTF-8, no NUL, not abridged); else the bytes go to `artifact`. */
  exact: boolean;
  /** Only head and tail are in the text (the output is longer than the row's share). */
  abridged: boolean;
}

/**
 * The row's text of one stream's captured bytes: the whole of it when it fits `rowBytes`, else its head
 * and tail with a line saying where the rest is; when not byte-exact, a last line saying so and where
 * the exact bytes are (`artifact`, e.g. "stdout.log").
 */
export function rowOutput(bytes: Buffer, rowBytes: number, artifact: string): RowOutput {
  const abridged = bytes.length > rowBytes;
  const binary = !isExactText(bytes);
  if (!abridged && !binary) return { text: bytes.toString('utf8'), exact: true, abridged: false };
  let text: string;
  if (abridged) {
    const half = Math.floor(rowBytes / 2);
    const head = bytes.subarray(0, completeUtf8Length(bytes.subarray(0, half)));
    let tailStart = bytes.length - half;
    while (tailStart < bytes.length && (bytes[tailStart] & 0xc0) === 0x80) tailStart++; // start on a character
    const tail = bytes.subarray(tailStart);
    const omitted = bytes.length - head.length - tail.length;
    text = `${decodeOutput(head)}\n… [${omitted} bytes omitted: the whole output is the artifact ${artifact}] …\n${decodeOutput(tail)}`;
  } else {
    text = decodeOutput(bytes);
  }
  if (binary) text += `${text.endsWith('\n') ? '' : '\n'}[not valid text: NUL bytes and invalid UTF-8 are shown as U+FFFD; the exact bytes are the artifact ${artifact}]\n`;
  return { text, exact: false, abridged };
}
