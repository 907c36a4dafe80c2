import type { TestStatus, TestType } from '../domain/enums';
import type { ArtifactView, ResultView, TestView } from '../views/view.types';
import type { Prisma, PrismaClient } from '../generated/prisma/client';
import { decodeCursor, encodeCursor } from './cursor';
import type { Page } from './plans.repository';
import { ARTIFACTS_IN_VIEW, artifactView, resultView, TEST_VIEW_SELECT, testView } from '../views/view.mappers';

type ArtifactRow = { id: string; name: string; kind: ArtifactView['kind']; sizeBytes: number; sha256: string };

/** What a worker needs to run a test. */
export interface TestSpecRow {
  id: string;
  planId: string;
  name: string;
  type: TestType;
  script: string;
  timeoutSeconds: number;
  requirements: unknown;
  services: unknown;
  env: unknown;
  artifactPaths: string[];
  maxRetries: number;
  pool: string;
  priority: number;
  status: TestStatus;
  attempts: number;
  /** The test's own files (WorkFile[]); the plan's and its bundle: PlansRepository.inputs. */
  files: unknown;
}

export class TestsRepository {
  constructor(private readonly prisma: PrismaClient) {}

  async get(id: string): Promise<TestView | null> {
    const row = await this.prisma.testCase.findUnique({ where: { id }, select: TEST_VIEW_SELECT });
    return row ? testView(row) : null;
  }

  /** Tests by id, in one query (the current tests of a list of environments). */
  async byIds(ids: readonly string[]): Promise<Map<string, TestView>> {
    if (!ids.length) return new Map();
    const rows = await this.prisma.testCase.findMany({ where: { id: { in: [...ids] } }, select: TEST_VIEW_SELECT });
    return new Map(rows.map((r) => [r.id, testView(r)]));
  }

  /** RUNNING tests (at most `limit`), with what handing one back needs. */
  running(limit: number) {
    return this.prisma.testCase.findMany({
      where: { status: 'RUNNING' },
      select: { id: true, planId: true, pool: true, attempts: true, maxRetries: true, priority: true },
      take: limit,
    });
  }

  /** QUEUED tests after `seq` in submission order (at most `limit`), with what queueing one needs. */
  queuedAfter(seq: bigint, limit: number) {
    return this.prisma.testCase.findMany({
      where: { status: 'QUEUED', seq: { gt: seq } },
      orderBy: { seq: 'asc' },
      take: limit,
      select: { id: true, planId: true, pool: true, priority: true, seq: true },
    });
  }

  /** Status and attempts of several tests in one query. */
  async states(ids: string[]): Promise<Map<string, { status: TestStatus; attempts: number }>> {
    const rows = await this.prisma.testCase.findMany({ where: { id: { in: ids } }, select: { id: true, status: true, attempts: true } });
    return new Map(rows.map((r) => [r.id, r]));
  }

  async spec(id: string): Promise<TestSpecRow | null> {
    return this.prisma.testCase.findUnique({
      where: { id },
      select: {
        id: true, planId: true, name: true, type: true, script: true, timeoutSeconds: true, requirements: true, services: true,
        env: true, artifactPaths: true, maxRetries: true, pool: true, priority: true, status: true, attempts: true, files: true,
      },
    });
  }

  /** Tests of a plan in submission order. */
  async listByPlan(planId: string, first: number, after: string | null, status: TestStatus | null): Promise<Page<TestView>> {
    const seq = after ? decodeCursor(after) : null;
    const base: Prisma.TestCaseWhereInput = { planId, ...(status ? { status } : {}) };
    const [rows, totalCount] = await Promise.all([
      this.prisma.testCase.findMany({
        where: { ...base, ...(seq !== null ? { seq: { gt: seq } } : {}) },
        orderBy: { seq: 'asc' },
        take: first + 1,
        select: { ...TEST_VIEW_SELECT, seq: true },
      }),
      this.countOfPlan(planId, status),
    ]);
    const page = rows.slice(0, first);
    return {
      nodes: page.map((r) => testView(r)),
      hasNextPage: rows.length > first,
      endCursor: page.length ? encodeCursor(page[page.length - 1].seq) : null,
      totalCount,
    };
  }

  /** From the plan's counters, not a count over its tests. */
  private async countOfPlan(planId: string, status: TestStatus | null): Promise<number> {
    const agg = await this.prisma.planStatusCount.aggregate({ where: { planId, ...(status ? { status } : {}) }, _sum: { n: true } });
    return agg._sum.n ?? 0;
  }

  /** The results of the latest attempts of these tests, batched. */
  async results(testIds: readonly string[]): Promise<Map<string, ResultView>> {
    const runs = await this.prisma.testRun.findMany({
      where: { testId: { in: [...testIds] }, finishedAt: { not: null } },
      orderBy: [{ testId: 'asc' }, { attempt: 'desc' }],
      distinct: ['testId'],
    });
    const pages = await this.firstArtifacts(runs.map((r) => r.id));
    return new Map(runs.map((r) => [r.testId, resultView({ ...r, ...(pages.get(r.id) ?? { artifacts: [], artifactCount: 0 }) })]));
  }

  /**
   * The first ARTIFACTS_IN_VIEW artifacts (name order) of each run and their counts, in two queries.
   * Not an `include` with `take`: that read all 20,000 rows of a run to keep 100 (~3 s in this thread).
   */
  private async firstArtifacts(runIds: string[]): Promise<Map<string, { artifacts: ArtifactRow[]; artifactCount: number }>> {
    const out = new Map<string, { artifacts: ArtifactRow[]; artifactCount: number }>();
    if (!runIds.length) return out;
    const ids = runIds.join(',');
    const counts = await this.prisma.$queryRawUnsafe<{ runId: string; n: number }[]>(
      `SELECT "run_id" AS "runId", count(*)::int AS "n" FROM "artifact" WHERE "run_id" = ANY(string_to_array($1, ',')::uuid[]) GROUP BY "run_id"`,
      ids,
    );
    for (const c of counts) out.set(c.runId, { artifacts: [], artifactCount: Number(c.n) });
    if (!counts.length) return out;
    const rows = await this.prisma.$queryRawUnsafe<(ArtifactRow & { runId: string })[]>(
      `SELECT "id", "runId", "name", "kind", "sizeBytes", "sha256" FROM (
         SELECT "id", "run_id" AS "runId", "name", "kind"::text AS "kind", "size_bytes" AS "sizeBytes", "sha256",
                row_number() OVER (PARTITION BY "run_id" ORDER BY "name" COLLATE "C", "id") AS "rn"
           FROM "artifact" WHERE "run_id" = ANY(string_to_array($1, ',')::uuid[])) a
        WHERE a."rn" <= ${ARTIFACTS_IN_VIEW} ORDER BY "runId", "rn"`,
      ids,
    );
    for (const r of rows) out.get(r.runId)?.artifacts.push({ id: r.id, name: r.name, kind: r.kind, sizeBytes: Number(r.sizeBytes), sha256: r.sha256 });
    return out;
  }

  /** A page of a run's artifacts, in name order. */
  async artifactsOfRun(runId: string, first: number, offset: number): Promise<ArtifactView[]> {
    const rows = await this.prisma.$queryRawUnsafe<ArtifactRow[]>(
      `SELECT "id", "name", "kind"::text AS "kind", "size_bytes" AS "sizeBytes", "sha256" FROM "artifact"
        WHERE "run_id" = $1::uuid ORDER BY "name" COLLATE "C", "id" OFFSET ${Number(offset)} LIMIT ${Number(first)}`,
      runId,
    );
    return rows.map((r) => artifactView({ ...r, sizeBytes: Number(r.sizeBytes) }));
  }

  /**
   * The one conditional update of a transition: it applies only while the test is in one of `from` (and,
   * when given, still at `attempt`). Returns the test after the change, or null when the guard failed.
   */
  async transition(
    id: string,
    guard: { from: readonly TestStatus[]; attempt?: number },
    data: Prisma.TestCaseUncheckedUpdateManyInput,
  ): Promise<TestView | null> {
    const res = await this.prisma.testCase.updateManyAndReturn({
      where: { id, status: { in: [...guard.from] }, ...(guard.attempt !== undefined ? { attempts: guard.attempt } : {}) },
      data,
      select: TEST_VIEW_SELECT,
    });
    return res.length ? testView(res[0]) : null;
  }

  /** Cancels every QUEUED test of a plan at once; returns them. */
  async cancelQueuedOfPlan(planId: string, at: Date): Promise<TestView[]> {
    const rows = await this.prisma.testCase.updateManyAndReturn({
      where: { planId, status: 'QUEUED' },
      data: { status: 'CANCELLED', finishedAt: at },
      select: TEST_VIEW_SELECT,
    });
    return rows.map((r) => testView(r));
  }

  async runningOfPlan(planId: string): Promise<{ id: string; attempts: number }[]> {
    return this.prisma.testCase.findMany({ where: { planId, status: 'RUNNING' }, select: { id: true, attempts: true } });
  }
}
