// Reads with a large store: systemStatus and one plan's page, with STORED tests (1,000,000 by default)
// loaded straight into the database by SQL in chunks. The statement triggers of the migration keep the
// counter tables that these reads use; the load checks systemStatus sees exactly what was inserted.
import { randomUUID } from 'node:crypto';
import { TEST_STATUSES, emptyCounts, type StatusCounts, type TestStatus } from '../src/domain/status';
import { gqlOk } from '../test/helpers/gql';
import { fmtBytes, fmtMs, latency, median, sleep, stallMonitor, timed, type Section, type SectionContext } from './bench-kit';

const STATUS = `{ systemStatus { activeTests queuedTests completedTests healthy workers
  counts { queued running passed failed timedOut error cancelled total } pools { name queuedTests capacity } components { name healthy } } }`;
const PLAN = `query($id: ID!) { plan(id: $id) { id status counts { queued running passed failed timedOut error cancelled total } tests(first: 50) { totalCount } } }`;

/** The status of the g-th test of a chunk: 30% queued, 2% running, 55% passed, the rest spread over failures. */
const STATUS_OF_G = `CASE WHEN g % 100 < 30 THEN 'QUEUED' WHEN g % 100 < 32 THEN 'RUNNING' WHEN g % 100 < 87 THEN 'PASSED'
  WHEN g % 100 < 95 THEN 'FAILED' WHEN g % 100 < 97 THEN 'TIMED_OUT' WHEN g % 100 < 98 THEN 'ERROR' ELSE 'CANCELLED' END`;

function statusOf(g: number): TestStatus {
  const m = g % 100;
  if (m < 30) return 'QUEUED';
  if (m < 32) return 'RUNNING';
  if (m < 87) return 'PASSED';
  if (m < 95) return 'FAILED';
  if (m < 97) return 'TIMED_OUT';
  if (m < 98) return 'ERROR';
  return 'CANCELLED';
}

function expectedCounts(size: number): StatusCounts {
  const c = emptyCounts();
  for (let g = 1; g <= size; g++) c[statusOf(g)]++;
  return c;
}

const GRAPH_KEY: Record<TestStatus, string> = {
  QUEUED: 'queued',
  RUNNING: 'running',
  PASSED: 'passed',
  FAILED: 'failed',
  TIMED_OUT: 'timedOut',
  ERROR: 'error',
  CANCELLED: 'cancelled',
};

async function systemCounts(ctx: SectionContext): Promise<Record<string, number>> {
  return (await gqlOk(ctx.server.url, STATUS)).systemStatus.counts;
}

async function databaseSize(ctx: SectionContext): Promise<number> {
  const rows = await ctx.server.core.db.prisma.$queryRawUnsafe<{ n: bigint }[]>(`SELECT pg_database_size(current_database()) AS n`);
  return Number(rows[0].n);
}

/** Inserts `total` tests in plans of `chunk` tests, one INSERT per plan; returns the plan ids. */
async function load(ctx: SectionContext, total: number, chunk: number): Promise<{ planIds: string[]; expected: StatusCounts }> {
  const prisma = ctx.server.core.db.prisma;
  const pools = ctx.server.core.config.pools;
  const unitPool = pools.find((p) => p.testTypes.includes('UNIT'))?.name ?? pools[0].name;
  const perfPool = pools.find((p) => p.testTypes.includes('PERFORMANCE'))?.name ?? unitPool;
  const planIds: string[] = [];
  const expected = emptyCounts();
  for (let done = 0; done < total; done += chunk) {
    const size = Math.min(chunk, total - done);
    const id = randomUUID();
    planIds.push(id);
    const start = Date.now();
    await prisma.$executeRawUnsafe(
      `INSERT INTO execution_plan (id, name, priority, test_count) VALUES ($1::uuid, $2, 0, $3::int)`,
      id,
      `bench-stored-${planIds.length}`,
      size,
    );
    await prisma.$executeRawUnsafe(
      `INSERT INTO test_case (id, plan_id, name, type, script, timeout_seconds, max_retries, priority, pool, status, attempts, started_at, finished_at)
       SELECT gen_random_uuid(), $1::uuid, 'stored-' || g,
              (CASE WHEN g % 10 = 0 THEN 'PERFORMANCE' ELSE 'UNIT' END)::"TestType", 'true', 600, 2, 0,
              CASE WHEN g % 10 = 0 THEN $3 ELSE $2 END,
              st::"TestStatus",
              CASE WHEN st = 'QUEUED' THEN 0 ELSE 1 END,
              CASE WHEN st = 'QUEUED' THEN NULL ELSE now() END,
              CASE WHEN st IN ('QUEUED', 'RUNNING') THEN NULL ELSE now() END
       FROM (SELECT g, ${STATUS_OF_G} AS st FROM generate_series(1, $4::int) AS g) AS s`,
      id,
      unitPool,
      perfPool,
      size,
    );
    await prisma.$queryRawUnsafe(`SELECT refresh_plan($1::uuid)::text`, id);
    const c = expectedCounts(size);
    for (const s of TEST_STATUSES) expected[s] += c[s];
    ctx.log(`loaded ${(done + size).toLocaleString('en-US')} / ${total.toLocaleString('en-US')} tests (${Date.now() - start} ms for this chunk)`);
    await sleep(1); // let timers and sockets run between statements, as between two requests
  }
  return { planIds, expected };
}

export const status1m: Section = {
  description: 'systemStatus and plan(id) latency with 1,000,000 stored tests (bulk-loaded by SQL)',
  async run(ctx) {
    const { stored, chunk, requests } = ctx.options;
    const before = await systemCounts(ctx);
    const statusRequest = () => gqlOk(ctx.server.url, STATUS).then(() => undefined);
    const base = await latency(statusRequest, { count: requests });
    ctx.record({
      key: 'status-base',
      measure: `systemStatus, ${before.total.toLocaleString('en-US')} stored tests (before the load): p50`,
      value: base.stats.p50,
      unit: 'ms',
      detail: `p95 ${fmtMs(base.stats.p95)}, p99 ${fmtMs(base.stats.p99)}; ${Math.round(base.perSecond)} req/s with 8 in flight`,
    });

    const rssBefore = process.memoryUsage().rss;
    const stall = stallMonitor();
    const { ms: loadMs, result } = await timed(() => load(ctx, stored, chunk));
    // PGlite runs each statement on this thread: the HTTP server was frozen during every INSERT. Let it
    // handle the timers that came due meanwhile (it closes idle keep-alive sockets) before the next
    // request, or fetch may reuse a socket the server is closing (ECONNRESET).
    await sleep(500);
    const stalled = await stall.stop();
    const { planIds, expected } = result;
    const rssAfter = process.memoryUsage().rss;
    // Measure the steady state: a PostgreSQL server's autovacuum would otherwise be analysing the new
    // rows during the measurements below, and PGlite has no autovacuum at all.
    const { ms: vacuumMs } = await timed(() => ctx.server.core.db.prisma.$executeRawUnsafe(`VACUUM (ANALYZE) test_case`));
    await sleep(500);
    const size = await databaseSize(ctx);
    ctx.record({
      key: 'load',
      measure: `bulk load of ${stored.toLocaleString('en-US')} tests by SQL (${planIds.length} INSERTs)`,
      value: loadMs,
      unit: 'ms',
      detail:
        `${Math.round((stored / loadMs) * 1000).toLocaleString('en-US')} rows/s; database ${fmtBytes(size)}` +
        `; event loop stalled up to ${fmtMs(stalled)}; then VACUUM (ANALYZE) ${fmtMs(vacuumMs)}` +
        (ctx.database === 'pglite' ? `; bench process RSS ${fmtBytes(rssBefore)} -> ${fmtBytes(rssAfter)}` : ''),
    });

    // What systemStatus reports must be exactly what went in (the counters kept by the statement triggers).
    const after = await systemCounts(ctx);
    const wrong = [...TEST_STATUSES.map((s) => [GRAPH_KEY[s], expected[s]] as const), ['total', stored] as const].filter(
      ([k, n]) => after[k] - before[k] !== n,
    );
    if (wrong.length) {
      throw new Error(`systemStatus counts after the load differ from what was inserted: ${wrong.map(([k, n]) => `${k} +${after[k] - before[k]}, inserted ${n}`).join('; ')}`);
    }
    ctx.log(`systemStatus counts.total ${after.total.toLocaleString('en-US')} (${stored.toLocaleString('en-US')} loaded + ${before.total} before): matches`);

    const status = await latency(statusRequest, { count: requests });
    ctx.record({
      key: 'status',
      measure: `systemStatus, ${after.total.toLocaleString('en-US')} stored tests: p50 (${requests} requests)`,
      value: status.stats.p50,
      unit: 'ms',
      detail:
        `p95 ${fmtMs(status.stats.p95)}, p99 ${fmtMs(status.stats.p99)}, max ${fmtMs(status.stats.max)}; ${Math.round(status.perSecond)} req/s with 8 in flight; ` +
        `p50 ${(status.stats.p50 / base.stats.p50).toFixed(2)}x that before the load`,
    });

    const bigPlan = planIds[0];
    const bigSize = Math.min(chunk, stored);
    const check = (await gqlOk(ctx.server.url, PLAN, { id: bigPlan })).plan;
    if (check.counts.total !== bigSize || check.tests.totalCount !== bigSize) {
      throw new Error(`plan ${bigPlan}: counts.total ${check.counts.total}, tests.totalCount ${check.tests.totalCount}, expected ${bigSize}`);
    }
    const plan = await latency(() => gqlOk(ctx.server.url, PLAN, { id: bigPlan }).then(() => undefined), { count: requests });
    ctx.record({
      key: 'plan',
      measure: `plan(id) { counts tests(first: 50) { totalCount } }, ${bigSize.toLocaleString('en-US')}-test plan: p50`,
      value: plan.stats.p50,
      unit: 'ms',
      detail: `p95 ${fmtMs(plan.stats.p95)}, p99 ${fmtMs(plan.stats.p99)}, max ${fmtMs(plan.stats.max)}; ${Math.round(plan.perSecond)} req/s with 8 in flight`,
    });

    // For scale: what systemStatus would cost if it counted test_case instead of reading the counters.
    const prisma = ctx.server.core.db.prisma;
    const scans: number[] = [];
    for (let i = 0; i < 3; i++) {
      scans.push((await timed(() => prisma.$queryRawUnsafe(`SELECT pool, status::text, count(*)::int FROM test_case GROUP BY pool, status`))).ms);
    }
    const scan = median(scans);
    ctx.record({
      key: 'scan',
      measure: `for scale: SELECT count(*) ... GROUP BY over test_case (median of 3)`,
      value: scan,
      unit: 'ms',
      detail: `${(scan / status.stats.p50).toFixed(0)}x the systemStatus p50 (which reads the counter tables)`,
    });
  },
};
