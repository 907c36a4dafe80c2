// Artifacts as people download them: one by id (its row, then its blob), every artifact of a plan in
// one tar, and the store's size and health for systemStatus.

import { Readable, type Writable } from 'node:stream';
import { isUuid } from '../db/cursor';
import { TarDirectories, tarEntryPath } from '../domain/downloads';
import { BlobMissingError, StoreUnavailableError, type BlobReader } from '../infra/artifact-store';
import { TarWriter } from '../infra/tar-writer';
import type { ServiceDeps } from './context';
import type { ComponentHealth } from './status.service';

export { BlobMissingError, StoreUnavailableError };

export interface Download {
  name: string;
  kind: string;
  sha256: string;
  blob: BlobReader;
}

/** Tests whose artifacts are listed per query. */
const TAR_TESTS = 200;
/** Blobs up to this size go into a tar in one read. */
const SMALL_BLOB = 1024 * 1024;
/** Blobs opened ahead of the one being written. */
const PREFETCH = 32;

type Prepared = { blob: BlobReader; content: Buffer | Readable | null } | { error: Error };

export type ArtifactsDeps = Pick<ServiceDeps, 'artifacts' | 'store' | 'storeUsage' | 'bundles' | 'logger' | 'now'>;

export class ArtifactsService {
  constructor(private readonly d: ArtifactsDeps) {}

  /**
   * The artifact and its opened blob; null when there is no such artifact. Throws BlobMissingError (its
   * bytes are not in the store) or StoreUnavailableError (the store cannot be read), each saying why.
   */
  async open(id: string): Promise<Download | null> {
    const row = isUuid(id) ? await this.d.artifacts.download(id) : null;
    if (!row) return null;
    const blob = await this.d.store.open(row.storageKey);
    return { name: row.name, kind: row.kind, sha256: row.sha256, blob };
  }

  /** false: no such plan. */
  async planExists(id: string): Promise<boolean> {
    return isUuid(id) && (await this.d.artifacts.planState(id)) !== null;
  }

  /** Throws StoreUnavailableError when the store cannot be used now (before a tar is begun). */
  checkStore(): Promise<void> {
    return this.d.store.check();
  }

  /**
   * Writes every artifact of the plan to `out` as one tar, `<test name>/<attempt>/<artifact name>`, a
   * page of rows and one blob at a time. A blob that cannot be read is replaced by an entry
   * `<path>.unavailable.txt` saying why: the archive is always whole. Stops when `out` closes.
   */
  async writePlanTar(planId: string, out: Writable): Promise<{ entries: number; unavailable: number }> {
    const tar = new TarWriter(out);
    const dirs = new TarDirectories();
    const mtime = this.d.now();
    let after: bigint | null = null;
    let entries = 0;
    let unavailable = 0;
    for (;;) {
      const { rows: page, lastSeq } = await this.d.artifacts.ofPlanTests(planId, after, TAR_TESTS);
      // the next few blobs are opened (a small one read) while one is written: the store's latency overlaps
      const ahead: Promise<Prepared>[] = [];
      const prepare = (i: number) => {
        if (i < page.length && ahead[i] === undefined) ahead[i] = this.prepare(page[i].storageKey);
      };
      try {
        for (const [i, a] of page.entries()) {
          for (let j = i; j <= i + PREFETCH; j++) prepare(j);
          if (tar.aborted) return { entries, unavailable };
          const path = tarEntryPath(dirs.of(a.testId, a.testName), a.attempt, a.name);
          const p = await ahead[i];
          if ('error' in p) {
            unavailable += 1;
            this.d.logger.warn({ planId, artifactId: a.id, err: p.error.message }, 'an artifact of a plan tar cannot be read');
            const note = Buffer.from(`${p.error.message}\n`);
            await tar.entry(`${path}.unavailable.txt`, note.length, mtime, note);
            continue;
          }
          const failed = await tar.entry(path, p.blob.size, mtime, p.content ?? p.blob.stream());
          entries += 1;
          if (failed) {
            unavailable += 1;
            this.d.logger.warn({ planId, artifactId: a.id, err: failed.message }, 'an artifact of a plan tar was read only in part (padded with zeros)');
            const note = Buffer.from(`the content could not be read in full (${failed.message}): the entry beside this one is padded with zeros\n`);
            await tar.entry(`${path}.unavailable.txt`, note.length, mtime, note);
          }
        }
      } finally {
        // blobs opened ahead and not written (the client went away): closed
        for (const p of ahead.slice(0)) {
          void p?.then((x) => ('blob' in x && x.content === null ? x.blob.close() : undefined)).catch((err: Error) => this.d.logger.warn({ err: err.message }, 'closing a blob opened ahead failed'));
        }
      }
      if (lastSeq === null) break;
      after = lastSeq;
    }
    await tar.end();
    return { entries, unavailable };
  }

  /** A blob opened, a small one read at once; or why it cannot be read. */
  private async prepare(key: string): Promise<Prepared> {
    let blob: BlobReader;
    try {
      blob = await this.d.store.open(key);
    } catch (err) {
      if (err instanceof BlobMissingError || err instanceof StoreUnavailableError) return { error: err };
      throw err;
    }
    if (blob.size > SMALL_BLOB) return { blob, content: null };
    try {
      return { blob, content: await blob.read() };
    } catch (err) {
      return { blob, content: Readable.from((async function* () { throw err; })()) };
    }
  }

  /** The `artifacts` component of systemStatus: whether the store can be used, and its size (and the bundles'). */
  async health(): Promise<ComponentHealth> {
    const [usable, usage, bundles] = await Promise.all([
      this.d.store.check().then(
        () => null,
        (err: Error) => err.message,
      ),
      this.d.storeUsage.get().catch((err: Error) => err),
      this.d.bundles.totals().catch((err: Error) => err),
    ]);
    const size =
      usage instanceof Error
        ? `size unknown: ${usage.message}`
        : usage === null
          ? 'size not counted yet'
          : `${formatSize(usage.bytes)} in ${usage.blobs} blob${usage.blobs === 1 ? '' : 's'}${usage.scannedAt ? ` (last scanned ${usage.scannedAt.toISOString()})` : ''}`;
    const bundled =
      bundles instanceof Error ? `bundles unknown: ${bundles.message}` : `bundles ${formatSize(bundles.bytes)} in ${bundles.bundles} bundle${bundles.bundles === 1 ? '' : 's'}`;
    return { name: 'artifacts', healthy: usable === null, detail: `${usable === null ? '' : `${usable}; `}${size}; ${bundled}` };
  }
}

export function formatSize(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return i === 0 ? `${bytes} bytes` : `${v.toFixed(1)} ${units[i]} (${bytes} bytes)`;
}
