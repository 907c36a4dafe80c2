import type { PrismaClient } from '../generated/prisma/client';

/** A stored bundle as its row says. */
export interface BundleRow {
  id: string;
  sizeBytes: number;
  files: number;
  archiveBytes: number;
}

export class BundlesRepository {
  constructor(private readonly prisma: PrismaClient) {}

  /** Records a bundle the store holds (once: the same id again changes nothing). */
  async record(b: BundleRow): Promise<void> {
    await this.prisma.bundle.upsert({ where: { id: b.id }, create: b, update: {} });
  }

  async get(id: string): Promise<BundleRow | null> {
    return this.prisma.bundle.findUnique({ where: { id }, select: { id: true, sizeBytes: true, files: true, archiveBytes: true } });
  }
}
