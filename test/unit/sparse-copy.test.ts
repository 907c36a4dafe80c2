// copySparse: same bytes and length as the source, holes kept, hash over the logical content, and
// never more written than allowed.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { BLOCK_BYTES, CHUNK_BYTES, copySparse } from '../../src/infra/sparse-copy';

describe('copySparse', () => {
  const dir = mkdtempSync(join(tmpdir(), 'orch-sparse-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  let n = 0;

  async function copy(content: Buffer, o: { length?: number; maxWritten?: number } = {}) {
    const src = join(dir, `src-${++n}`);
    const dest = join(dir, `dest-${n}`);
    writeFileSync(src, content);
    const s = await open(src, 'r');
    const d = await open(dest, 'wx');
    try {
      const r = await copySparse(s, d, { length: o.length ?? content.length, maxWritten: o.maxWritten, hash: true });
      return { r, out: readFileSync(dest), dest };
    } finally {
      await s.close();
      await d.close();
    }
  }

  it('copies odd-sized content with zero runs across block and chunk boundaries byte for byte', async () => {
    const c = Buffer.alloc(3 * CHUNK_BYTES + 1234);
    randomBytes(10).copy(c, 0);
    randomBytes(BLOCK_BYTES + 7).copy(c, CHUNK_BYTES - 5); // straddles a chunk boundary
    c[c.length - 1] = 1; // data in the last, partial block
    const { r, out } = await copy(c);
    assert.ok(out.equals(c));
    assert.equal(r.bytes, c.length);
    assert.equal(r.sha256, createHash('sha256').update(c).digest('hex'));
    assert.equal(r.cutAtWriteLimit, false);
    assert.ok(r.written < 5 * BLOCK_BYTES, `wrote ${r.written}`);
  });

  it('a file of zeros only is a hole of the full length', async () => {
    const c = Buffer.alloc(2 * CHUNK_BYTES + 3);
    const { r, out, dest } = await copy(c);
    assert.equal(r.written, 0);
    assert.ok(out.equals(c));
    assert.equal(statSync(dest).blocks, 0);
  });

  it('stops at the logical length asked for, and at the write limit (block by block)', async () => {
    const c = randomBytes(5 * BLOCK_BYTES);
    const head = await copy(c, { length: 1000 });
    assert.ok(head.out.equals(c.subarray(0, 1000)));
    const cut = await copy(c, { maxWritten: 2 * BLOCK_BYTES + 100 });
    assert.equal(cut.r.cutAtWriteLimit, true);
    assert.equal(cut.r.written, 2 * BLOCK_BYTES);
    assert.ok(cut.out.equals(c.subarray(0, 2 * BLOCK_BYTES)));
    const empty = await copy(Buffer.alloc(0));
    assert.equal(empty.r.bytes, 0);
    assert.equal(empty.r.sha256, createHash('sha256').digest('hex'));
  });
});
