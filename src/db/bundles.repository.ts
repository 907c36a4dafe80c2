import type { PrismaClient } from '../generated/prisma/client';

/** A stored bundle as its row says. */
export interface BundleRow {
  id: string;
  sizeBytes: number;
  files: number;
  archiveBytes: number;
}

/** A bundle as GET /bundles/:id shows it. */
export interface BundleInfo extends BundleRow {
  uploadedAt: Date;
  /** Plans that name it (while one does, it is kept). */
  plans: number;
}

/**
 * The advisory lock under which a bundle is put in the store with its row, and taken out of the store
 * with its row deleted (services/bundle.service.ts): an upload never records a tree that a removal is
 * taking away.
 */
export const BUNDLE_LOCK = 727_276;

/** What may be done to bundle rows while the bundle lock is held. */
export interface LockedBundles {
  /** Records a bundle the store holds (the same id again only marks it uploaded `at`). */
  record(b: BundleRow, at: Date): Promise<void>;
  /**
   * Deletes the rows of up to `limit` bundles that no plan uses and that were last uploaded before
   * `uploadedBefore` (of `ids` only, when given); returns them.
   */
  deleteUnused(o: { uploadedBefore: Date; ids?: readonly string[]; limit: number }): Promise<{ id: string; sizeBytes: number }[]>;
}

export class BundlesRepository {
  constructor(private readonly prisma: PrismaClient) {}

  /** `fn` with the bundle lock held, in one transaction: what it did is kept only if it resolves. */
  async withLock<T>(fn: (locked: LockedBundles) => Promise<T>): Promise<T> {
    return this.prisma.$transaction(
      async (tx) => {
        await tx.$queryRawUnsafe(`SELECT pg_advisory_xact_lock(${BUNDLE_LOCK})::text`);
        return fn({
          record: async (b, at) => {
            await tx.bundle.upsert({ where: { id: b.id }, create: { ...b, uploadedAt: at }, update: { uploadedAt: at } });
          },
          deleteUnused: async ({ uploadedBefore, ids, limit }) => {
            const rows = await tx.$queryRawUnsafe<{ id: string; sizeBytes: number }[]>(
              `DELETE FROM "bundle" b WHERE b."id" IN (
                 SELECT c."id" FROM "bundle" c
                  WHERE c."uploaded_at" < $1 AND ($2::text[] IS NULL OR c."id" = ANY($2::text[]))
                    AND NOT EXISTS (SELECT 1 FROM "execution_plan" p WHERE p."bundle_id" = c."id")
                  ORDER BY c."uploaded_at" LIMIT $3)
               RETURNING b."id" AS "id", b."size_bytes" AS "sizeBytes"`,
              uploadedBefore,
              ids ? [...ids] : null,
              limit,
            );
            return rows.map((r) => ({ id: r.id, sizeBytes: Number(r.sizeBytes) }));
          },
        });
      },
      { timeout: 60_000, maxWait: 60_000 },
    );
  }

  async get(id: string): Promise<BundleRow | null> {
    return this.prisma.bundle.findUnique({ where: { id }, select: { id: true, sizeBytes: true, files: true, archiveBytes: true } });
  }

  async info(id: string): Promise<BundleInfo | null> {
    const b = await this.prisma.bundle.findUnique({
      where: { id },
      select: { id: true, sizeBytes: true, files: true, archiveBytes: true, uploadedAt: true, _count: { select: { plans: true } } },
    });
    if (!b) return null;
    const { _count, ...row } = b;
    return { ...row, plans: _count.plans };
  }

  /** Bundles stored and the bytes of their files. */
  async totals(): Promise<{ bundles: number; bytes: number }> {
    const r = await this.prisma.bundle.aggregate({ _count: { _all: true }, _sum: { sizeBytes: true } });
    return { bundles: r._count._all, bytes: r._sum.sizeBytes ?? 0 };
  }
}
