// Artifact rows as downloads and retention need them, and the deletion of finished plans a batch at a
// time. Blobs are shared by content (the storage key is the sha256): a blob may be removed from the
// store only when no row references it any more, decided under the blob lock (see BLOB_LOCK).

import type { PrismaClient } from '../generated/prisma/client';

/**
 * The advisory lock between adding artifact rows (shared: any number of workers at once) and deciding
 * that a blob is no longer referenced and removing it (exclusive). A worker that found a blob already
 * stored inserts its rows under the shared lock and then checks the blob is still there (storing it
 * again if not); a remover checks references and removes under the exclusive lock. So a blob is never
 * removed while a row that references it is committed or about to be.
 */
export const BLOB_LOCK = 727_275;

export interface DownloadRow {
  id: string;
  name: string;
  kind: string;
  sizeBytes: number;
  sha256: string;
  storageKey: string;
}

/** One artifact of a plan, in the order the plan's tar lists them. */
export interface PlanArtifactRow {
  id: string;
  testId: string;
  testName: string;
  testSeq: bigint;
  attempt: number;
  name: string;
  storageKey: string;
}

export type PlanState = { status: string; unfinishedTests: number; finishedAt: Date | null };

export class ArtifactsRepository {
  constructor(private readonly prisma: PrismaClient) {}

  async download(id: string): Promise<DownloadRow | null> {
    const a = await this.prisma.artifact.findUnique({ where: { id }, select: { id: true, name: true, kind: true, sizeBytes: true, sha256: true, storageKey: true } });
    return a ? { ...a, sizeBytes: Number(a.sizeBytes) } : null;
  }

  /**
   * The artifacts of the plan's next `tests` tests after the test `afterSeq` (submission order), each
   * test's by attempt and name. Paged by test, through the (plan, seq) index: a page costs the same at
   * the end of a plan of 50,000 tests as at its start.
   */
  async ofPlanTests(planId: string, afterSeq: bigint | null, tests: number): Promise<{ rows: PlanArtifactRow[]; lastSeq: bigint | null }> {
    const rows = await this.prisma.$queryRawUnsafe<(PlanArtifactRow & { lastSeq: bigint })[]>(
      `WITH t AS (
         SELECT "id", "name", "seq" FROM "test_case"
          WHERE "plan_id" = $1::uuid AND ($2::bigint IS NULL OR "seq" > $2::bigint) ORDER BY "seq" LIMIT ${Number(tests)}
       )
       SELECT a."id", t."id" AS "testId", t."name" AS "testName", t."seq" AS "testSeq", r."attempt", a."name", a."storage_key" AS "storageKey",
              (SELECT max("seq") FROM t) AS "lastSeq"
         FROM t JOIN "test_run" r ON r."test_id" = t."id" JOIN "artifact" a ON a."run_id" = r."id"
       UNION ALL
       SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, (SELECT max("seq") FROM t)
       ORDER BY 4, 5, 6, 1`,
      planId,
      afterSeq,
    );
    // the last row carries where the page ended even when its tests have no artifact
    const end = rows.pop();
    const lastSeq = end?.lastSeq === null || end?.lastSeq === undefined ? null : BigInt(end.lastSeq);
    return { rows: rows.map((r) => ({ id: r.id, testId: r.testId, testName: r.testName, testSeq: BigInt(r.testSeq), attempt: Number(r.attempt), name: r.name, storageKey: r.storageKey })), lastSeq };
  }

  /** null: no such plan. */
  async planState(planId: string): Promise<PlanState | null> {
    const rows = await this.prisma.$queryRawUnsafe<{ status: string; finishedAt: Date | null; unfinished: bigint | number | null }[]>(
      `SELECT p."status", p."finished_at" AS "finishedAt",
              (SELECT coalesce(sum(c."n"), 0) FROM "plan_status_count" c WHERE c."plan_id" = p."id" AND c."status" IN ('QUEUED', 'RUNNING')) AS "unfinished"
         FROM "execution_plan" p WHERE p."id" = $1::uuid`,
      planId,
    );
    const r = rows[0];
    return r ? { status: r.status, finishedAt: r.finishedAt, unfinishedTests: Number(r.unfinished ?? 0) } : null;
  }

  /** Finished plans that finished before `cutoff`, oldest first, none of whose tests is still queued or running. */
  async finishedBefore(cutoff: Date, limit: number): Promise<string[]> {
    const rows = await this.prisma.$queryRawUnsafe<{ id: string }[]>(
      `SELECT p."id" FROM "execution_plan" p
        WHERE p."finished_at" < $1::timestamptz AND p."status" IN ('PASSED', 'FAILED', 'CANCELLED')
          AND NOT EXISTS (SELECT 1 FROM "plan_status_count" c WHERE c."plan_id" = p."id" AND c."status" IN ('QUEUED', 'RUNNING') AND c."n" > 0)
        ORDER BY p."finished_at" LIMIT ${Number(limit)}`,
      cutoff.toISOString(),
    );
    return rows.map((r) => r.id);
  }

  /**
   * Deletes up to `limit` tests of a finished plan with their runs and artifacts (one transaction), and
   * returns the storage keys those artifacts held (each once): candidates for removal from the store.
   * deleted 0: the plan has no test left.
   */
  async deleteTestBatch(planId: string, limit: number): Promise<{ deleted: number; artifacts: number; keys: string[] }> {
    return this.prisma.$transaction(
      async (tx) => {
        const tests = await tx.$queryRawUnsafe<{ id: string }[]>(
          `SELECT "id" FROM "test_case" WHERE "plan_id" = $1::uuid AND "status" NOT IN ('QUEUED', 'RUNNING') ORDER BY "seq" LIMIT ${Number(limit)} FOR UPDATE`,
          planId,
        );
        if (!tests.length) return { deleted: 0, artifacts: 0, keys: [] };
        const ids = tests.map((t) => t.id);
        const keys = await tx.$queryRawUnsafe<{ key: string; n: bigint | number }[]>(
          `SELECT a."storage_key" AS "key", count(*) AS "n" FROM "artifact" a JOIN "test_run" r ON r."id" = a."run_id"
            WHERE r."test_id" = ANY($1::uuid[]) GROUP BY a."storage_key"`,
          ids,
        );
        // their runs and the runs' artifacts go with them (ON DELETE CASCADE)
        await tx.$executeRawUnsafe(`DELETE FROM "test_case" WHERE "id" = ANY($1::uuid[])`, ids);
        return { deleted: ids.length, artifacts: keys.reduce((s, k) => s + Number(k.n), 0), keys: keys.map((k) => k.key) };
      },
      { timeout: 60_000, maxWait: 30_000 },
    );
  }

  /** Deletes the plan row once it has no test left; false when it still has some (or is gone). */
  /** Deletes the plan if none of its tests is left; the bundle it used (null: none, or not deleted). */
  async deleteEmptyPlan(planId: string): Promise<{ deleted: boolean; bundleId: string | null }> {
    const rows = await this.prisma.$queryRawUnsafe<{ bundleId: string | null }[]>(
      `DELETE FROM "execution_plan" p WHERE p."id" = $1::uuid AND NOT EXISTS (SELECT 1 FROM "test_case" t WHERE t."plan_id" = p."id")
        RETURNING p."bundle_id" AS "bundleId"`,
      planId,
    );
    return { deleted: rows.length > 0, bundleId: rows[0]?.bundleId ?? null };
  }

  /**
   * Under the exclusive blob lock: which of `keys` no artifact row references any more, handed to
   * `remove` (which removes them from the store) before the lock is released. (Bundles are not in
   * this store: the bundle store has its own rows and lock, services/bundle.service.ts.)
   */
  async withUnreferenced<T>(keys: string[], remove: (unreferenced: string[]) => Promise<T>): Promise<T> {
    return this.prisma.$transaction(
      async (tx) => {
        await tx.$queryRawUnsafe(`SELECT pg_advisory_xact_lock(${BLOB_LOCK})::text`);
        const rows = await tx.$queryRawUnsafe<{ key: string }[]>(
          `SELECT k AS "key" FROM unnest($1::text[]) AS k
            WHERE NOT EXISTS (SELECT 1 FROM "artifact" a WHERE a."storage_key" = k)`,
          keys,
        );
        return remove(rows.map((r) => r.key));
      },
      { timeout: 120_000, maxWait: 60_000 },
    );
  }
}
