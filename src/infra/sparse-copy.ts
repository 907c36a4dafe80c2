// Copies a file keeping its holes: what reads as zeros is skipped with a positional write past it,
// and the destination is then truncated to the logical length. The copy is whole (same bytes, same
// length) yet writes no more than the data the source really holds: a 64 MiB core dump with 1 MiB of
// pages takes 1 MiB on the destination's disk. Reads go through a 64 KiB buffer, async: never a
// synchronous copy on the event loop.

import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';

/** One read. */
export const CHUNK_BYTES = 64 * 1024;
/** Zero detection granularity: a filesystem block, so only blocks holding data are written. */
export const BLOCK_BYTES = 4096;

const ZEROS = Buffer.alloc(CHUNK_BYTES);

export interface SparseCopyOptions {
  /** Logical bytes to copy from offset 0 (at most; the copy ends earlier at the end of the source). */
  length: number;
  /**
   * Bytes of data the copy may write (the source's allocated size, say). A source that holds more
   * than that (it changed meanwhile) is cut at the block where the limit would be passed.
   */
  maxWritten?: number;
  /** Hash the logical content (zeros included) as it is copied. */
  hash?: boolean;
}

export interface SparseCopyResult {
  /** Logical bytes of the copy: its length. */
  bytes: number;
  /** Bytes actually written (the data blocks). */
  written: number;
  /** The copy stopped because maxWritten would have been passed. */
  cutAtWriteLimit: boolean;
  /** sha256 (hex) of the `bytes` logical bytes, when asked for. */
  sha256?: string;
}

/** True when buf[from, to) is all zeros. */
function isZero(buf: Buffer, from: number, to: number): boolean {
  return buf.compare(ZEROS, 0, to - from, from, to) === 0;
}

/** Copies up to `length` logical bytes of `src` into the empty `dest`, sparsely. */
export async function copySparse(src: FileHandle, dest: FileHandle, o: SparseCopyOptions): Promise<SparseCopyResult> {
  const buf = Buffer.allocUnsafe(CHUNK_BYTES);
  const h: Hash | null = o.hash ? createHash('sha256') : null;
  const maxWritten = o.maxWritten ?? Number.POSITIVE_INFINITY;
  let pos = 0;
  let written = 0;
  let cutAtWriteLimit = false;
  outer: while (pos < o.length) {
    const want = Math.min(CHUNK_BYTES, o.length - pos);
    const { bytesRead } = await src.read(buf, 0, want, pos);
    if (bytesRead === 0) break; // the source is shorter than asked
    // Write the runs of non-zero blocks; skip the zero ones.
    let i = 0;
    while (i < bytesRead) {
      const blockEnd = Math.min(i + BLOCK_BYTES, bytesRead);
      if (isZero(buf, i, blockEnd)) {
        h?.update(buf.subarray(i, blockEnd));
        i = blockEnd;
        continue;
      }
      let runEnd = blockEnd;
      while (runEnd < bytesRead) {
        const next = Math.min(runEnd + BLOCK_BYTES, bytesRead);
        if (isZero(buf, runEnd, next)) break;
        runEnd = next;
      }
      if (written + (runEnd - i) > maxWritten) {
        // Keep what fits, block by block, then stop: never more than the limit.
        const fit = Math.floor((maxWritten - written) / BLOCK_BYTES) * BLOCK_BYTES;
        if (fit > 0) {
          await writeAll(dest, buf, i, i + fit, pos + i);
          h?.update(buf.subarray(i, i + fit));
          written += fit;
        }
        pos += i + fit;
        cutAtWriteLimit = true;
        break outer;
      }
      await writeAll(dest, buf, i, runEnd, pos + i);
      h?.update(buf.subarray(i, runEnd));
      written += runEnd - i;
      i = runEnd;
    }
    pos += bytesRead;
  }
  // The holes at the end (and a copy of zeros only) get their length from the truncate.
  await dest.truncate(pos);
  return { bytes: pos, written, cutAtWriteLimit, sha256: h?.digest('hex') };
}

async function writeAll(dest: FileHandle, buf: Buffer, from: number, to: number, position: number): Promise<void> {
  let off = from;
  while (off < to) {
    const { bytesWritten } = await dest.write(buf, off, to - off, position + (off - from));
    if (bytesWritten <= 0) throw new Error('write returned no progress');
    off += bytesWritten;
  }
}
