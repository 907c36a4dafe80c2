import type { PlanStatus, TestType } from '../domain/enums';
import type { StatusCounts } from '../domain/status';
import type { PlanView } from '../views/view.types';
import type { PrismaClient } from '../generated/prisma/client';
import { decodeCursor, encodeCursor } from './cursor';
import { countsFrom, planView, planViewFromJson } from '../views/view.mappers';

export interface NewTestRow {
  id: string;
  name: string;
  type: TestType;
  script: string;
  timeoutSeconds: number;
  requirements: object;
  services: object[];
  env: object[];
  artifactPaths: string[];
  maxRetries: number;
  pool: string;
  /** The test's own files as stored (domain/work-files.ts WorkFile). */
  files: object[];
}

export interface NewPlan {
  id: string;
  name: string;
  priority: number;
  idempotencyKey: string | null;
  /** Digest of the content submitted with the key (see domain/plan-digest). */
  idempotencyDigest: string | null;
  /** Id of an uploaded bundle (a row of `bundle`), or null. */
  bundleId: string | null;
  /** Files for every test, as stored. */
  files: object[];
  tests: NewTestRow[];
  /** The token that submitted it (name and id), or null with authentication off. */
  submittedBy: string | null;
  submittedByTokenId: string | null;
}

export interface Page<T> {
  nodes: T[];
  hasNextPage: boolean;
  endCursor: string | null;
  totalCount: number;
}

export class UniqueViolation extends Error {}
/** The plan names a bundle whose row is gone (deleted between the check and the insert). */
export class MissingBundle extends Error {}

/** Tests per INSERT statement of a submission. */
const INSERT_CHUNK = 2_000;

const isForeignKeyViolation = (e: unknown): boolean => {
  const err = e as { code?: string; message?: string; cause?: { code?: string } };
  return err?.code === 'P2003' || err?.cause?.code === '23503' || /foreign key constraint|23503/i.test(String(err?.message));
};

const isUniqueViolation = (e: unknown): boolean => {
  const err = e as { code?: string; message?: string; cause?: { code?: string } };
  return err?.code === 'P2002' || err?.cause?.code === '23505' || /unique constraint|23505|duplicate key/i.test(String(err?.message));
};

export class PlansRepository {
  /** `now`: the clock of the services (ServiceDeps.now), for every time this repository writes. */
  constructor(
    private readonly prisma: PrismaClient,
    private readonly now: () => Date,
  ) {}

  /** Stores the plan and all its tests in one transaction: all or nothing. */
  async create(plan: NewPlan): Promise<PlanView> {
    try {
      const created = await this.prisma.$transaction(
        async (tx) => {
          const row = await tx.executionPlan.create({
            data: {
              id: plan.id,
              name: plan.name,
              priority: plan.priority,
              idempotencyKey: plan.idempotencyKey,
              idempotencyDigest: plan.idempotencyDigest,
              testCount: plan.tests.length,
              bundleId: plan.bundleId,
              submittedBy: plan.submittedBy,
              submittedByTokenId: plan.submittedByTokenId,
            },
          });
          if (plan.files.length) await tx.planFiles.create({ data: { planId: plan.id, files: plan.files } });
          const rows = plan.tests.map((t) => ({
            id: t.id,
            name: t.name,
            type: t.type,
            script: t.script,
            timeout_seconds: t.timeoutSeconds,
            requirements: t.requirements,
            services: t.services,
            env: t.env,
            artifact_paths: t.artifactPaths,
            max_retries: t.maxRetries,
            pool: t.pool,
            files: t.files,
          }));
          // A few statements of INSERT … SELECT over JSON for all the tests: 10,000 rows in well under a second
          // (Prisma's createMany takes ~3 s). In chunks, so that the embedded database, which runs on this
          // process's thread, lets other requests through between them.
          for (let i = 0; i < rows.length; i += INSERT_CHUNK) {
            await tx.$executeRawUnsafe(
              `INSERT INTO "test_case" ("id", "plan_id", "name", "type", "script", "timeout_seconds", "requirements", "services", "env",
                                        "artifact_paths", "max_retries", "priority", "pool", "status", "attempts", "queued_at", "files")
               SELECT x.id, $2::uuid, x.name, x.type::"TestType", x.script, x.timeout_seconds, x.requirements, x.services, x.env,
                      ARRAY(SELECT jsonb_array_elements_text(x.artifact_paths)), x.max_retries, $3::int, x.pool, 'QUEUED', 0, $4::timestamptz, x.files
               FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS e(doc, ord),
                    jsonb_to_record(e.doc) AS x(id uuid, name text, type text, script text, timeout_seconds int,
                      requirements jsonb, services jsonb, env jsonb, artifact_paths jsonb, max_retries int, pool text, files jsonb)
               ORDER BY e.ord`,
              JSON.stringify(rows.slice(i, i + INSERT_CHUNK)),
              plan.id,
              plan.priority,
              row.createdAt,
            );
            await new Promise((resolve) => setImmediate(resolve));
          }
          return row;
        },
        { timeout: 120_000, maxWait: 30_000 },
      );
      const counts = countsFrom([{ status: 'QUEUED', n: plan.tests.length }]);
      return planView(created, counts);
    } catch (e) {
      if (isUniqueViolation(e)) throw new UniqueViolation('unique key taken', { cause: e });
      if (plan.bundleId && isForeignKeyViolation(e)) throw new MissingBundle(`bundle ${plan.bundleId} is gone`, { cause: e });
      throw e;
    }
  }

  /** What every test of the plan starts with besides its own files: its bundle and its files. */
  async inputs(id: string): Promise<{ bundleId: string | null; files: unknown } | null> {
    const row = await this.prisma.executionPlan.findUnique({ where: { id }, select: { bundleId: true, files: { select: { files: true } } } });
    return row ? { bundleId: row.bundleId, files: row.files?.files ?? [] } : null;
  }

  /** The plan created with this key, and the digest of what was submitted with it (null: before digests were kept). */
  async findByIdempotencyKey(key: string): Promise<{ plan: PlanView; digest: string | null } | null> {
    const row = await this.prisma.executionPlan.findUnique({ where: { idempotencyKey: key } });
    return row ? { plan: planView(row, await this.counts(row.id)), digest: row.idempotencyDigest } : null;
  }

  async get(id: string): Promise<PlanView | null> {
    const row = await this.prisma.executionPlan.findUnique({ where: { id } });
    return row ? planView(row, await this.counts(row.id)) : null;
  }

  /** Plans by id with their counts, in two queries (the plans of a page of tests). */
  async byIds(ids: readonly string[]): Promise<Map<string, PlanView>> {
    if (!ids.length) return new Map();
    const [rows, counts] = await Promise.all([
      this.prisma.executionPlan.findMany({ where: { id: { in: [...ids] } } }),
      this.prisma.planStatusCount.findMany({ where: { planId: { in: [...ids] } } }),
    ]);
    const byPlan = new Map<string, { status: string; n: number }[]>();
    for (const c of counts) byPlan.set(c.planId, [...(byPlan.get(c.planId) ?? []), c]);
    return new Map(rows.map((p) => [p.id, planView(p, countsFrom(byPlan.get(p.id) ?? []))]));
  }

  async counts(planId: string): Promise<StatusCounts> {
    return countsFrom(await this.prisma.planStatusCount.findMany({ where: { planId } }));
  }

  /** Newest first. */
  async list(first: number, after: string | null, status: PlanStatus | null): Promise<Page<PlanView>> {
    const seq = after ? decodeCursor(after) : null;
    const where = { ...(status ? { status } : {}), ...(seq !== null ? { seq: { lt: seq } } : {}) };
    const [rows, totalCount] = await Promise.all([
      this.prisma.executionPlan.findMany({ where, orderBy: { seq: 'desc' }, take: first + 1 }),
      this.prisma.executionPlan.count({ where: status ? { status } : {} }),
    ]);
    const page = rows.slice(0, first);
    const counts = await this.prisma.planStatusCount.findMany({ where: { planId: { in: page.map((p) => p.id) } } });
    const byPlan = new Map<string, { status: string; n: number }[]>();
    for (const c of counts) byPlan.set(c.planId, [...(byPlan.get(c.planId) ?? []), c]);
    return {
      nodes: page.map((p) => planView(p, countsFrom(byPlan.get(p.id) ?? []))),
      hasNextPage: rows.length > first,
      endCursor: page.length ? encodeCursor(page[page.length - 1].seq) : null,
      totalCount,
    };
  }

  /** Marks the plan cancelled (once); false when it does not exist. */
  async markCancelled(id: string): Promise<boolean> {
    const n = await this.prisma.executionPlan.updateMany({ where: { id, cancelledAt: null }, data: { cancelledAt: this.now() } });
    if (n.count) return true;
    return (await this.prisma.executionPlan.count({ where: { id } })) > 0;
  }

  /** Plans still QUEUED or RUNNING although none of their tests is: a refresh was lost. */
  async stale(limit = 500): Promise<string[]> {
    const rows = await this.prisma.$queryRawUnsafe<{ id: string }[]>(
      `SELECT p."id" FROM "execution_plan" p
        WHERE p."status" IN ('QUEUED', 'RUNNING')
          AND NOT EXISTS (SELECT 1 FROM "plan_status_count" c WHERE c."plan_id" = p."id" AND c."status" IN ('QUEUED', 'RUNNING') AND c."n" > 0)
        LIMIT ${Number(limit)}`,
    );
    return rows.map((r) => r.id);
  }

  /** Recomputes the plan's status from its counters under its row lock; see refresh_plan in the migration. */
  async refresh(id: string): Promise<PlanView | null> {
    const rows = await this.prisma.$queryRawUnsafe<{ r: { plan: Record<string, unknown>; counts: Record<string, number> } | null }[]>(
      `SELECT "refresh_plan"($1::uuid) AS r`,
      id,
    );
    const r = rows[0]?.r;
    if (!r) return null;
    return planViewFromJson(r.plan, countsFrom(Object.entries(r.counts).map(([status, n]) => ({ status, n }))));
  }
}
