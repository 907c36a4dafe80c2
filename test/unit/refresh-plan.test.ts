// The SQL function refresh_plan (prisma/migrations/*_init/migration.sql) mirrors planStatusFrom in
// src/domain/status.ts: both must give the same plan status for every mix of test statuses, cancelled
// or not. Runs on the embedded PGlite database (a copy of a migrated template: a few seconds).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { openDatabase, type Database } from '../../src/db/database';
import { TEST_STATUSES, emptyCounts, isPlanFinished, planStatusFrom, type StatusCounts, type TestStatus } from '../../src/domain/status';
import { freshPgliteDir, quietLogger } from '../helpers/server';

interface Refreshed {
  plan: { id: string; status: string; started_at: string | null; finished_at: string | null; cancelled_at: string | null };
  counts: Record<string, number>;
}

describe('refresh_plan agrees with planStatusFrom', () => {
  let dataDir: string;
  let db: Database;

  before(async () => {
    dataDir = await freshPgliteDir();
    db = await openDatabase({ dataDir, logger: quietLogger() });
  });
  after(async () => {
    await db?.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  async function refresh(id: string): Promise<Refreshed | null> {
    const rows = await db.prisma.$queryRawUnsafe<{ r: Refreshed | null }[]>(`SELECT refresh_plan($1::uuid) AS r`, id);
    return rows[0].r;
  }

  /** Creates plans with the given test status mixes, in two statements. */
  async function createPlans(plans: { id: string; counts: StatusCounts; cancelled: boolean }[]): Promise<void> {
    await db.prisma.$executeRawUnsafe(
      `INSERT INTO execution_plan (id, name, priority, test_count, cancelled_at)
       SELECT (x->>'id')::uuid, 'plan', 0, (x->>'total')::int, CASE WHEN (x->>'cancelled')::boolean THEN now() END
       FROM jsonb_array_elements($1::jsonb) AS x`,
      JSON.stringify(plans.map((p) => ({ id: p.id, total: TEST_STATUSES.reduce((s, st) => s + p.counts[st], 0), cancelled: p.cancelled }))),
    );
    const groups = plans.flatMap((p) => TEST_STATUSES.filter((s) => p.counts[s] > 0).map((s) => ({ plan: p.id, status: s, n: p.counts[s] })));
    await db.prisma.$executeRawUnsafe(
      `INSERT INTO test_case (id, plan_id, name, type, script, timeout_seconds, max_retries, priority, pool, status)
       SELECT gen_random_uuid(), (x->>'plan')::uuid, (x->>'status') || '-' || g, 'UNIT', 'true', 60, 0, 0, 'container', (x->>'status')::"TestStatus"
       FROM jsonb_array_elements($1::jsonb) AS x, generate_series(1, (x->>'n')::int) AS g`,
      JSON.stringify(groups),
    );
  }

  async function countRows(id: string): Promise<StatusCounts> {
    const rows = await db.prisma.$queryRawUnsafe<{ status: TestStatus; n: number }[]>(
      `SELECT status::text AS status, count(*)::int AS n FROM test_case WHERE plan_id = $1::uuid GROUP BY status`,
      id,
    );
    const counts = emptyCounts();
    for (const r of rows) counts[r.status] = r.n;
    return counts;
  }

  /** refresh_plan's answer checked against planStatusFrom and against a count of the plan's rows. */
  async function check(id: string, cancelled: boolean, what: string, known?: StatusCounts): Promise<Refreshed> {
    const actual = known ?? (await countRows(id));
    const r = await refresh(id);
    assert.ok(r, `${what}: refresh_plan found the plan`);
    // the trigger-kept counters that refresh_plan reads match the rows
    const fromCounters = emptyCounts();
    for (const [s, n] of Object.entries(r.counts)) fromCounters[s as TestStatus] = n;
    assert.deepEqual(fromCounters, actual, `${what}: counters`);
    const expected = planStatusFrom(actual, cancelled);
    assert.equal(r.plan.status, expected, `${what}: ${JSON.stringify(actual)} cancelled=${cancelled}`);
    assert.equal(r.plan.finished_at !== null, isPlanFinished(expected), `${what}: finished_at ${r.plan.finished_at}`);
    if (expected === 'RUNNING' || expected === 'PASSED' || expected === 'FAILED') assert.notEqual(r.plan.started_at, null, `${what}: started_at`);
    return r;
  }

  it('for every mix of statuses (each present or not, 1 or 2 of it), cancelled or not', async () => {
    const plans: { id: string; counts: StatusCounts; cancelled: boolean }[] = [];
    for (let mask = 0; mask < 2 ** TEST_STATUSES.length; mask++) {
      for (const cancelled of [false, true]) {
        const counts = emptyCounts();
        TEST_STATUSES.forEach((s, i) => {
          if (mask & (1 << i)) counts[s] = 1 + ((mask >> ((i + 1) % TEST_STATUSES.length)) & 1);
        });
        plans.push({ id: randomUUID(), counts, cancelled });
      }
    }
    await createPlans(plans);
    // the rows went in as intended (one count over all plans, not one per plan)
    const total = await db.prisma.$queryRawUnsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM test_case WHERE plan_id = ANY($1::uuid[])`, plans.map((p) => p.id));
    assert.equal(total[0].n, plans.reduce((s, p) => s + TEST_STATUSES.reduce((t, st) => t + p.counts[st], 0), 0));
    const seen = new Set<string>();
    for (const p of plans) {
      const r = await check(p.id, p.cancelled, `plan ${JSON.stringify(p.counts)}`, p.counts);
      seen.add(r.plan.status);
    }
    assert.deepEqual([...seen].sort(), ['CANCELLED', 'FAILED', 'PASSED', 'QUEUED', 'RUNNING']);
  });

  it('step by step as tests move, including a test handed back to the queue', async () => {
    const id = randomUUID();
    await createPlans([{ id, counts: { ...emptyCounts(), QUEUED: 3 }, cancelled: false }]);
    const setStatus = async (name: string, status: TestStatus) => {
      const n = await db.prisma.$executeRawUnsafe(`UPDATE test_case SET status = $3::"TestStatus" WHERE plan_id = $1::uuid AND name = $2`, id, name, status);
      assert.equal(n, 1);
    };
    assert.equal((await check(id, false, 'start')).plan.status, 'QUEUED');
    await setStatus('QUEUED-1', 'RUNNING');
    const running = await check(id, false, 'one running');
    assert.equal(running.plan.status, 'RUNNING');
    await setStatus('QUEUED-1', 'QUEUED'); // handed back after an environment fault
    const back = await check(id, false, 'handed back');
    assert.equal(back.plan.status, 'QUEUED');
    assert.equal(back.plan.started_at, running.plan.started_at, 'started_at is kept');
    await setStatus('QUEUED-1', 'RUNNING');
    await setStatus('QUEUED-1', 'PASSED');
    assert.equal((await check(id, false, 'one passed')).plan.status, 'RUNNING');
    await setStatus('QUEUED-2', 'RUNNING');
    await setStatus('QUEUED-2', 'PASSED');
    await setStatus('QUEUED-3', 'RUNNING');
    await setStatus('QUEUED-3', 'TIMED_OUT');
    const failed = await check(id, false, 'all finished');
    assert.equal(failed.plan.status, 'FAILED');
    // calling it again changes nothing
    assert.deepEqual(await refresh(id), failed);
  });

  it('a plan cancelled while a test runs is CANCELLED at once and keeps its finish time', async () => {
    const id = randomUUID();
    await createPlans([{ id, counts: { ...emptyCounts(), RUNNING: 1, QUEUED: 1 }, cancelled: false }]);
    assert.equal((await check(id, false, 'running')).plan.status, 'RUNNING');
    await db.prisma.$executeRawUnsafe(`UPDATE execution_plan SET cancelled_at = now() WHERE id = $1::uuid`, id);
    await db.prisma.$executeRawUnsafe(`UPDATE test_case SET status = 'CANCELLED' WHERE plan_id = $1::uuid AND status = 'QUEUED'`, id);
    const cancelled = await check(id, true, 'cancelled');
    assert.equal(cancelled.plan.status, 'CANCELLED');
    await db.prisma.$executeRawUnsafe(`UPDATE test_case SET status = 'PASSED' WHERE plan_id = $1::uuid AND status = 'RUNNING'`, id);
    const later = await check(id, true, 'running test finished');
    assert.equal(later.plan.finished_at, cancelled.plan.finished_at);
  });

  it('is NULL for a plan that does not exist', async () => {
    assert.equal(await refresh(randomUUID()), null);
  });
});
