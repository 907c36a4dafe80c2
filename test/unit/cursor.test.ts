// Opaque pagination cursors and id checks, src/db/cursor.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeCursor, encodeCursor, isUuid } from '../../src/db/cursor';

describe('cursors', () => {
  it('round-trip every sequence number from 0 to the largest bigint', () => {
    for (const seq of [0n, 1n, 42n, 1_000_000n, 2n ** 53n + 1n, 9_223_372_036_854_775_807n]) {
      assert.equal(decodeCursor(encodeCursor(seq)), seq, String(seq));
    }
  });

  it('are opaque URL-safe text, not the bare number', () => {
    const c = encodeCursor(123n);
    assert.match(c, /^[A-Za-z0-9_-]+$/);
    assert.notEqual(c, '123');
    assert.notEqual(encodeCursor(1n), encodeCursor(2n));
  });

  it('decode to null when not one of ours', () => {
    const b64 = (s: string) => Buffer.from(s).toString('base64url');
    for (const bad of ['', '123', 'not a cursor', b64('s:'), b64('s:-1'), b64('s:1.5'), b64('x:1'), b64('s:1 '), b64(' s:1'), b64(`s:${'9'.repeat(20)}`), b64('s:1\n')]) {
      assert.equal(decodeCursor(bad), null, JSON.stringify(bad));
    }
  });
});

describe('isUuid', () => {
  it('accepts UUIDs in either case and refuses anything else', () => {
    assert.equal(isUuid('123e4567-e89b-12d3-a456-426614174000'), true);
    assert.equal(isUuid('123E4567-E89B-12D3-A456-426614174000'), true);
    for (const bad of ['', 'x', '123e4567e89b12d3a456426614174000', '123e4567-e89b-12d3-a456-42661417400', '123e4567-e89b-12d3-a456-4266141740000', 'g23e4567-e89b-12d3-a456-426614174000', ' 123e4567-e89b-12d3-a456-426614174000']) {
      assert.equal(isUuid(bad), false, bad);
    }
  });
});
