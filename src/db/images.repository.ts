import type { ImageStatus } from '../domain/enums';
import type { PrismaClient } from '../generated/prisma/client';

/** An image's state as the workers last reported it (one row per image name). */
export interface ImageStateRow {
  name: string;
  status: ImageStatus;
  digest: string | null;
  sizeBytes: number | null;
  builtAt: Date | null;
  error: string | null;
  host: string | null;
  updatedAt: Date;
}

export interface ImageReport {
  status: ImageStatus;
  /** undefined: keep what is stored (a build starting keeps the digest of the version in use). */
  digest?: string | null;
  sizeBytes?: number | null;
  builtAt?: Date | null;
  error?: string | null;
  host: string;
}

/** Image states: written by the workers that build images, read by the API. */
export class ImagesRepository {
  constructor(
    private readonly prisma: PrismaClient,
    private readonly now: () => Date,
  ) {}

  async report(name: string, r: ImageReport): Promise<ImageStateRow> {
    const data = {
      status: r.status,
      host: r.host,
      updatedAt: this.now(),
      ...(r.digest !== undefined ? { digest: r.digest } : {}),
      ...(r.sizeBytes !== undefined ? { sizeBytes: r.sizeBytes } : {}),
      ...(r.builtAt !== undefined ? { builtAt: r.builtAt } : {}),
      ...(r.error !== undefined ? { error: r.error } : {}),
    };
    return this.prisma.image.upsert({ where: { name }, create: { name, ...data }, update: data });
  }

  async get(name: string): Promise<ImageStateRow | null> {
    return this.prisma.image.findUnique({ where: { name } });
  }

  async list(names?: string[]): Promise<ImageStateRow[]> {
    return this.prisma.image.findMany({ where: names ? { name: { in: names } } : {}, orderBy: { name: 'asc' } });
  }
}
