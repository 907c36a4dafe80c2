// The bundle the benchmarks run with (issue 9): 10 MB in 1,000 files of 10 KiB in 10 directories, not
// compressible (like a build's output), and a `run.sh` at its top; as a tar, and unpacked in a bundle
// store of the bench's own (the same unpacking POST /bundles does).
import { randomFillSync } from 'node:crypto';
import { Readable } from 'node:stream';
import { BundleStore } from '../src/infra/bundle/bundle-store';
import { TAR_END, tarHeader, tarPadding } from '../src/infra/tar/tar-writer';

export const BUNDLE_FILES = 1_000;
export const BUNDLE_FILE_BYTES = 10 * 1024;
export const BUNDLE_LABEL = 'a 10 MB, 1,000-file bundle';
/** What a test of the bundle runs: its files are there, the script is the bundle's. */
export const BUNDLE_SCRIPT = 'test -f dir9/file99.bin && ./run.sh';

/** The bundle as a plain tar. */
export function bundleTar(): Buffer {
  const parts: Buffer[] = [];
  for (let d = 0; d < 10; d++) {
    parts.push(tarHeader({ name: `dir${d}/`, type: 'directory' }));
    for (let f = 0; f < BUNDLE_FILES / 10; f++) {
      const data = Buffer.alloc(BUNDLE_FILE_BYTES);
      randomFillSync(data);
      parts.push(tarHeader({ name: `dir${d}/file${f}.bin`, type: 'file', size: data.length }), data, tarPadding(data.length));
    }
  }
  parts.push(tarHeader({ name: 'run.sh', type: 'file', size: 8, mode: 0o755 }), Buffer.from('exit 0\n\n'), tarPadding(8), TAR_END);
  return Buffer.concat(parts);
}

export const BENCH_BUNDLE_LIMITS = { maxArchiveBytes: 1 << 30, maxUnpackedBytes: 1 << 30, maxEntries: 100_000 };

/** `tar` unpacked into a store at `dir`; its id and its tree (what a worker gives a run as bundleDir). */
export async function storeBundle(dir: string, tar: Buffer): Promise<{ id: string; tree: string }> {
  const store = new BundleStore(dir);
  const { id } = await store.put(Readable.from([tar]), BENCH_BUNDLE_LIMITS);
  return { id, tree: store.treeOf(id) };
}
