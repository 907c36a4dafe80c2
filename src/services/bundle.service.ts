// Bundles: an upload to POST /bundles is unpacked into the bundle store (infra/bundle) and recorded in
// the database (the row a plan references: a bundle a plan uses cannot be deleted under it).

import type { BundleRow } from '../db/bundles.repository';
import { BUNDLE_ID } from '../domain/work-files';
import type { BundleStore } from '../infra/bundle/bundle-store';
import type { ServiceDeps } from './context';

/** What POST /bundles answers (201). */
export interface UploadedBundle {
  id: string;
  sizeBytes: number;
  files: number;
}

export class BundleService {
  constructor(private readonly d: Pick<ServiceDeps, 'config' | 'logger' | 'bundles' | 'bundleStore'>) {}

  /** Stores an upload; rejects with a BundleError (infra/tar/bundle-error.ts) for an archive refused. */
  async upload(body: AsyncIterable<Buffer>, declaredBytes: number | null): Promise<UploadedBundle> {
    const started = Date.now();
    const m = await this.d.bundleStore.put(body, this.d.config.bundleLimits, declaredBytes);
    await this.d.bundles.record({ id: m.id, sizeBytes: m.sizeBytes, files: m.files, archiveBytes: m.archiveBytes });
    this.d.logger.info({ bundle: m.id, sizeBytes: m.sizeBytes, files: m.files, archiveBytes: m.archiveBytes, ms: Date.now() - started }, 'bundle stored');
    return { id: m.id, sizeBytes: m.sizeBytes, files: m.files };
  }

  /** The bundle's row, or null when no bundle of that id was uploaded. */
  async get(id: string): Promise<BundleRow | null> {
    return BUNDLE_ID.test(id) ? this.d.bundles.get(id) : null;
  }
}
