// Environment images as users see them: each configured definition with the state the workers last
// reported (MISSING until a worker has it), the pools whose tests may use it, and what a submission
// must know (an image that failed to build makes its tests unschedulable).

import type { ImageStatus } from '../domain/enums';
import { allowsImage } from '../domain/matching';
import type { ImageReport, ImageStateRow, ImagesRepository } from '../db/images.repository';

export type { ImageReport };
import type { ComponentHealth } from './status.service';
import type { ServiceDeps } from './context';

export interface ImageView {
  name: string;
  source: string;
  packages: string[];
  status: ImageStatus;
  digest: string | null;
  sizeBytes: number | null;
  builtAt: string | null;
  error: string | null;
  pools: string[];
}

export type ImagesDeps = Pick<ServiceDeps, 'config' | 'logger'> & { images: ImagesRepository };

export class ImagesService {
  constructor(private readonly d: ImagesDeps) {}

  /** Every configured image, in configuration order. */
  async list(): Promise<ImageView[]> {
    const rows = new Map((await this.d.images.list()).map((r) => [r.name, r]));
    return this.d.config.images.map((def) => this.view(def, rows.get(def.name) ?? null));
  }

  async get(name: string): Promise<ImageView | null> {
    const def = this.d.config.images.find((i) => i.name === name);
    return def ? this.view(def, await this.d.images.get(name)) : null;
  }

  /** Images among `names` whose build failed, with why: their tests cannot run. */
  async failed(names: string[]): Promise<Map<string, string>> {
    if (names.length === 0) return new Map();
    const rows = await this.d.images.list(names);
    return new Map(rows.filter((r) => r.status === 'FAILED').map((r) => [r.name, r.error ?? 'its build failed']));
  }

  /** A worker's report on one image (building, built, failed). */
  async report(name: string, report: ImageReport): Promise<void> {
    await this.d.images.report(name, report);
  }

  /** The `images` component of systemStatus: unhealthy while any configured image failed to build. */
  async health(): Promise<ComponentHealth> {
    const images = await this.list();
    const failed = images.filter((i) => i.status === 'FAILED');
    const by = (s: ImageStatus) => images.filter((i) => i.status === s).map((i) => i.name);
    const parts = [
      failed.length ? `FAILED: ${failed.map((i) => `${i.name} (${i.error ?? 'no message'})`).join('; ')}` : '',
      by('BUILDING').length ? `building: ${by('BUILDING').join(', ')}` : '',
      by('MISSING').length ? `not built yet: ${by('MISSING').join(', ')}` : '',
      by('READY').length ? `ready: ${by('READY').join(', ')}` : '',
    ].filter(Boolean);
    return { name: 'images', healthy: failed.length === 0, detail: parts.join('; ') || 'no image is configured' };
  }

  private view(def: { name: string; from: string; packages?: readonly string[] }, row: ImageStateRow | null): ImageView {
    const pools = this.d.config.pools.filter((p) => p.kind === 'CONTAINER' && allowsImage(p, def.name)).map((p) => p.name);
    return {
      name: def.name,
      source: def.from,
      packages: [...(def.packages ?? [])],
      status: row?.status ?? 'MISSING',
      digest: row?.digest ?? null,
      sizeBytes: row?.sizeBytes ?? null,
      builtAt: row?.builtAt?.toISOString() ?? null,
      error: row?.status === 'FAILED' ? row.error : null,
      pools,
    };
  }
}
