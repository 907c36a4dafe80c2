// Opaque pagination cursors: the base64url of a row's sequence number.

export function encodeCursor(seq: bigint): string {
  return Buffer.from(`s:${seq.toString()}`).toString('base64url');
}

const MAX_SEQ = 2n ** 63n - 1n;

/** The sequence number in a cursor, or null when the cursor is not one of ours. */
export function decodeCursor(cursor: string): bigint | null {
  const text = Buffer.from(cursor, 'base64url').toString();
  const m = /^s:(\d{1,19})$/.exec(text);
  if (!m) return null;
  const seq = BigInt(m[1]);
  return seq <= MAX_SEQ ? seq : null;
}

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isUuid = (id: string): boolean => UUID.test(id);
