// Bundles: an upload to POST /bundles is unpacked into the bundle store (infra/bundle) and recorded in
// the database (the row a plan references: a bundle a plan uses cannot be deleted under it). A bundle
// no plan uses any more goes once its last upload is UNUSED_BUNDLE_GRACE_MS old (retention.service.ts
// asks): the grace is the time a client has between uploading a bundle and submitting the plan that
// names it. Putting a bundle in place with its row, and taking it out with its row deleted, happen
// under one lock (db/bundles.repository.ts BUNDLE_LOCK): an upload never records a tree being removed.

import type { BundleInfo, BundleRow } from '../db/bundles.repository';
import { BUNDLE_ID } from '../domain/work-files';
import type { ServiceDeps } from './context';

export type { BundleInfo };

/** A bundle no plan uses is kept this long after its last upload. */
export const UNUSED_BUNDLE_GRACE_MS = 10 * 60 * 1000;
/** Bundles deleted per hold of the lock. */
const RELEASE_BATCH = 100;

/** What POST /bundles answers (201). */
export interface UploadedBundle {
  id: string;
  sizeBytes: number;
  files: number;
}

export type BundleDeps = Pick<ServiceDeps, 'config' | 'logger' | 'bundles' | 'bundleStore' | 'now'>;

export class BundleService {
  constructor(private readonly d: BundleDeps) {}

  /** Stores an upload; rejects with a BundleError (infra/tar/bundle-error.ts) for an archive refused. */
  async upload(body: AsyncIterable<Buffer>, declaredBytes: number | null): Promise<UploadedBundle> {
    const started = Date.now();
    const prepared = await this.d.bundleStore.prepare(body, this.d.config.bundleLimits, declaredBytes);
    const m = prepared.manifest;
    try {
      await this.d.bundles.withLock(async (locked) => {
        await prepared.install();
        await locked.record({ id: m.id, sizeBytes: m.sizeBytes, files: m.files, archiveBytes: m.archiveBytes }, this.d.now());
      });
    } finally {
      await prepared.discard();
    }
    this.d.logger.info({ bundle: m.id, sizeBytes: m.sizeBytes, files: m.files, archiveBytes: m.archiveBytes, ms: Date.now() - started }, 'bundle stored');
    return { id: m.id, sizeBytes: m.sizeBytes, files: m.files };
  }

  /** The bundle's row, or null when no bundle of that id was uploaded. */
  async get(id: string): Promise<BundleRow | null> {
    return BUNDLE_ID.test(id) ? this.d.bundles.get(id) : null;
  }

  /** What GET /bundles/:id shows; null when no bundle of that id is stored. */
  async info(id: string): Promise<BundleInfo | null> {
    return BUNDLE_ID.test(id) ? this.d.bundles.info(id) : null;
  }

  /**
   * Deletes the bundles no plan uses whose last upload is older than the grace (of `ids` only, when
   * given), rows and files; returns how many and the bytes of their files. A tree that cannot be
   * removed is logged and left (its row is gone: an upload of the same bytes records it again).
   */
  async releaseUnused(ids?: readonly string[]): Promise<{ removed: number; bytes: number }> {
    const out = { removed: 0, bytes: 0 };
    const uploadedBefore = new Date(this.d.now().getTime() - UNUSED_BUNDLE_GRACE_MS);
    for (;;) {
      const removals: (() => Promise<void>)[] = [];
      const deleted = await this.d.bundles.withLock(async (locked) => {
        const rows = await locked.deleteUnused({ uploadedBefore, ids, limit: RELEASE_BATCH });
        for (const row of rows) {
          try {
            const remove = await this.d.bundleStore.detach(row.id);
            if (remove) removals.push(remove);
          } catch (err) {
            this.d.logger.error({ bundle: row.id, err: (err as Error).message }, 'a bundle no plan uses could not be taken out of the bundle store');
          }
        }
        return rows;
      });
      for (const remove of removals) {
        await remove().catch((err: Error) => this.d.logger.error({ err: err.message, store: this.d.bundleStore.root }, 'the files of a deleted bundle could not be removed'));
      }
      out.removed += deleted.length;
      out.bytes += deleted.reduce((s, r) => s + r.sizeBytes, 0);
      if (deleted.length < RELEASE_BATCH) break;
    }
    if (out.removed) this.d.logger.info(out, 'bundles no plan uses deleted');
    return out;
  }
}
