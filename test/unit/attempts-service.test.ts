// The attempts service owns an attempt's lifecycle: begin, finish, stop, hand back, fault, take over,
// lose, record-failed, unservable. Each is one fenced statement and publishes its events. Checked on
// a real database (embedded PGlite, a copy of a migrated template) and a real Redis (events, queues).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { openDatabase, type Database } from '../../src/db/database';
import { PlansRepository } from '../../src/db/plans.repository';
import { RunsRepository } from '../../src/db/runs.repository';
import { TestsRepository } from '../../src/db/tests.repository';
import type { RunOutcome } from '../../src/environments/driver';
import { EventBus } from '../../src/events/bus';
import type { PlanView, TestView } from '../../src/views/view.types';
import { DirectoryArtifactStore } from '../../src/infra/artifact-store';
import { redisOptionsFromUrl } from '../../src/infra/redis-server';
import { TestQueues } from '../../src/queue/producer';
import { AttemptsService, type Attempt } from '../../src/services/attempts.service';
import { startTestRedis, type TestRedis } from '../helpers/redis';
import { freshPgliteDir, quietLogger } from '../helpers/server';

const POOL = 'container';
const LIMITS = { memoryMb: 512, diskMb: 1024, pids: 256 };

function outcome(o: Partial<RunOutcome> = {}): RunOutcome {
  return {
    exitCode: 0, signal: null, timedOut: false, aborted: false, oomKilled: false, stdout: 'hello\n', stderr: '',
    stdoutBytes: Buffer.from('hello\n'), stderrBytes: Buffer.alloc(0), outputTruncated: false, durationMs: 12,
    cpuTimeMs: 3, peakMemoryBytes: 1024, files: [], ...o,
  };
}

describe('attempts service (PGlite, Redis)', () => {
  let dataDir: string;
  let storeDir: string;
  let db: Database;
  let redis: TestRedis;
  let conn: Redis;
  let events: EventBus;
  let queues: TestQueues;
  let runs: RunsRepository;
  let attempts: AttemptsService;
  const seen: { test: TestView[]; plan: PlanView[] } = { test: [], plan: [] };

  before(async () => {
    dataDir = await freshPgliteDir();
    storeDir = mkdtempSync(join(tmpdir(), 'orch-store-'));
    db = await openDatabase({ dataDir, logger: quietLogger() });
    redis = await startTestRedis();
    conn = new Redis({ ...redisOptionsFromUrl(redis.url), maxRetriesPerRequest: null });
    const prefix = `u${randomUUID().slice(0, 8)}`;
    events = new EventBus(conn, prefix);
    queues = new TestQueues(conn, prefix, [POOL]);
    await events.on('test', (t) => seen.test.push(t));
    await events.on('plan', (p) => seen.plan.push(p));
    runs = new RunsRepository(db.prisma, () => new Date());
    attempts = new AttemptsService({
      logger: quietLogger(),
      tests: new TestsRepository(db.prisma),
      plans: new PlansRepository(db.prisma, () => new Date()),
      runs,
      events,
      queues,
      now: () => new Date(),
      store: new DirectoryArtifactStore(storeDir),
      retryDelayMs: 10,
    });
  });
  after(async () => {
    await attempts?.flush();
    await queues?.close();
    await events?.close();
    await conn?.quit();
    await redis?.stop();
    await db?.close();
    for (const d of [dataDir, storeDir]) if (d) rmSync(d, { recursive: true, force: true });
  });

  /** A plan with one QUEUED test (or in `status` at `attempts`); returns the test's id and plan's. */
  async function newTest(o: { maxRetries?: number; status?: string; attempts?: number } = {}): Promise<{ id: string; planId: string }> {
    const planId = randomUUID();
    const id = randomUUID();
    await db.prisma.$executeRawUnsafe(`INSERT INTO execution_plan (id, name, priority, test_count) VALUES ($1::uuid, 'plan', 3, 1)`, planId);
    await db.prisma.$executeRawUnsafe(
      `INSERT INTO test_case (id, plan_id, name, type, script, timeout_seconds, max_retries, priority, pool, status, attempts, environment_id)
       VALUES ($1::uuid, $2::uuid, 't', 'UNIT', 'true', 60, $3, 3, $4, $5::"TestStatus", $6, CASE WHEN $5 = 'RUNNING' THEN gen_random_uuid() END)`,
      id, planId, o.maxRetries ?? 1, POOL, o.status ?? 'QUEUED', o.attempts ?? 0,
    );
    if (o.status === 'RUNNING') {
      await db.prisma.$executeRawUnsafe(
        `INSERT INTO test_run (id, test_id, attempt, worker_id, status) VALUES (gen_random_uuid(), $1::uuid, $2, 'dead-worker', 'RUNNING')`,
        id, o.attempts,
      );
    }
    return { id, planId };
  }

  async function row(id: string) {
    return db.prisma.testCase.findUniqueOrThrow({ where: { id } });
  }
  async function runOf(id: string, attempt: number) {
    return db.prisma.testRun.findUniqueOrThrow({ where: { testId_attempt: { testId: id, attempt } } });
  }
  async function eventually(what: string, ok: () => boolean): Promise<void> {
    for (let i = 0; i < 200 && !ok(); i++) await new Promise((r) => setTimeout(r, 25));
    assert.ok(ok(), `${what} (waited 5 s)`);
  }
  async function begun(id: string): Promise<Attempt> {
    const spec = (await attempts.spec(id))!;
    const a = await attempts.begin(spec, { from: spec.status, attempt: spec.attempts }, randomUUID(), 'w1', quietLogger());
    assert.ok(a, 'the attempt began');
    return a;
  }

  it('begin: RUNNING at the next attempt with a run row, published; a stale guard begins nothing', async () => {
    const t = await newTest();
    const spec = (await attempts.spec(t.id))!;
    const env = randomUUID();
    const a = await attempts.begin(spec, { from: 'QUEUED', attempt: 0 }, env, 'w1', quietLogger());
    assert.equal(a?.number, 1);
    const r = await row(t.id);
    assert.deepEqual([r.status, r.attempts, r.environmentId], ['RUNNING', 1, env]);
    assert.equal((await runOf(t.id, 1)).workerId, 'w1');
    await eventually('a test event says RUNNING', () => seen.test.some((v) => v.id === t.id && v.status === 'RUNNING'));
    assert.equal(await attempts.begin(spec, { from: 'QUEUED', attempt: 0 }, env, 'w2', quietLogger()), null, 'the same guard again');
    assert.equal((await row(t.id)).attempts, 1);
  });

  it('finish: the result on the run and the test, a test event with it, the plan refreshed', async () => {
    const t = await newTest();
    const a = await begun(t.id);
    await attempts.finish(a, outcome(), LIMITS);
    assert.equal((await row(t.id)).status, 'PASSED');
    const run = await runOf(t.id, 1);
    assert.deepEqual([run.status, run.exitCode, run.stdout, run.infrastructure], ['PASSED', 0, 'hello\n', false]);
    await eventually('a test event carries the result', () => seen.test.some((v) => v.id === t.id && v.status === 'PASSED' && v.result?.exitCode === 0));
    await attempts.flush();
    await eventually('the plan is PASSED', () => seen.plan.some((p) => p.id === t.planId && p.status === 'PASSED'));
  });

  it('finish of a stale attempt: kept on its run, the test (cancelled meanwhile) unchanged', async () => {
    const t = await newTest();
    const a = await begun(t.id);
    await db.prisma.testCase.update({ where: { id: t.id }, data: { status: 'CANCELLED', finishedAt: new Date() } });
    await attempts.finish(a, outcome({ exitCode: 1 }), LIMITS);
    assert.equal((await row(t.id)).status, 'CANCELLED');
    assert.equal((await runOf(t.id, 1)).status, 'FAILED');
  });

  it('stopped: the run row only (the test moved on)', async () => {
    const t = await newTest();
    const a = await begun(t.id);
    await attempts.stopped(a, outcome({ aborted: true, exitCode: null, signal: 'SIGKILL' }), 'fenced');
    const run = await runOf(t.id, 1);
    assert.deepEqual([run.status, run.errorMessage], ['CANCELLED', 'superseded by a newer attempt']);
    assert.equal((await row(t.id)).status, 'RUNNING');
  });

  it('handBack: QUEUED at the same attempt, no environment, not finished; only once', async () => {
    const t = await newTest();
    const a = await begun(t.id);
    assert.equal(await attempts.handBack(a, outcome({ aborted: true, exitCode: null })), true);
    const r = await row(t.id);
    assert.deepEqual([r.status, r.attempts, r.environmentId, r.finishedAt], ['QUEUED', 1, null, null]);
    const run = await runOf(t.id, 1);
    assert.deepEqual([run.status, run.infrastructure, run.errorMessage], ['QUEUED', true, 'the worker shut down during the run']);
    await eventually('a test event says QUEUED', () => seen.test.some((v) => v.id === t.id && v.status === 'QUEUED' && v.attempts === 1));
    assert.equal(await attempts.handBack(a, outcome({ aborted: true })), false, 'fenced: it is no longer RUNNING at attempt 1');
    // the next attempt begins from QUEUED at 1
    const again = await begun(t.id);
    assert.equal(again.number, 2);
  });

  it('fault: QUEUED again while the budget lasts, then ERROR; the run is an infrastructure ERROR', async () => {
    const t = await newTest({ maxRetries: 1 });
    const first = await begun(t.id);
    assert.equal(await attempts.fault(first, 'environment fault: boom'), 'retry');
    assert.deepEqual([(await row(t.id)).status, (await row(t.id)).environmentId], ['QUEUED', null]);
    const run = await runOf(t.id, 1);
    assert.deepEqual([run.status, run.infrastructure, run.errorMessage], ['ERROR', true, 'environment fault: boom']);
    const second = await begun(t.id);
    assert.equal(await attempts.fault(second, 'environment fault: boom\0again'), 'done', 'a NUL from the sandbox in the message');
    const r = await row(t.id);
    assert.equal(r.status, 'ERROR');
    assert.equal((await runOf(t.id, 2)).errorMessage, 'environment fault: boom\uFFFDagain');
    assert.ok(r.finishedAt, 'finished');
    await eventually('a test event says ERROR', () => seen.test.some((v) => v.id === t.id && v.status === 'ERROR'));
  });

  it('takeOver: a lost worker\'s attempt is closed; the test stays RUNNING for the next, or ends in ERROR', async () => {
    const t = await newTest({ status: 'RUNNING', attempts: 1, maxRetries: 1 });
    assert.equal(await attempts.takeOver((await attempts.spec(t.id))!, quietLogger()), 'retry');
    assert.equal((await row(t.id)).status, 'RUNNING');
    assert.deepEqual([(await runOf(t.id, 1)).status, (await runOf(t.id, 1)).errorMessage], ['ERROR', 'environment fault: the worker running attempt 1 was lost']);
    const a = await begun(t.id); // from RUNNING at 1
    assert.equal(a.number, 2);

    const spent = await newTest({ status: 'RUNNING', attempts: 2, maxRetries: 1 });
    assert.equal(await attempts.takeOver((await attempts.spec(spent.id))!, quietLogger()), 'done');
    assert.equal((await row(spent.id)).status, 'ERROR');
    assert.equal((await runOf(spent.id, 2)).status, 'ERROR');
  });

  it('lose (the reconciler): QUEUED with a new job, or ERROR with none; fenced by the attempt', async () => {
    const t = await newTest({ status: 'RUNNING', attempts: 1, maxRetries: 1 });
    const running = { id: t.id, planId: t.planId, pool: POOL, priority: 3, attempts: 1, maxRetries: 1 };
    assert.deepEqual(await attempts.lose(running), { retry: true });
    const r = await row(t.id);
    assert.deepEqual([r.status, r.environmentId, r.attempts], ['QUEUED', null, 1]);
    assert.equal((await runOf(t.id, 1)).status, 'ERROR');
    assert.deepEqual(await queues.missing(POOL, [t.id]), [], 'its job is queued again');
    assert.equal(await attempts.lose(running), null, 'no longer RUNNING: nothing written');

    const spent = await newTest({ status: 'RUNNING', attempts: 2, maxRetries: 1 });
    assert.deepEqual(await attempts.lose({ ...running, id: spent.id, planId: spent.planId, attempts: 2 }), { retry: false });
    assert.equal((await row(spent.id)).status, 'ERROR');
    assert.deepEqual(await queues.missing(POOL, [spent.id]), [spent.id], 'no job for an ERROR');

    const moved = await newTest({ status: 'RUNNING', attempts: 3, maxRetries: 5 });
    assert.equal(await attempts.lose({ ...running, id: moved.id, planId: moved.planId, attempts: 2 }), null, 'a stale attempt');
    assert.equal((await row(moved.id)).status, 'RUNNING');
    assert.equal((await runOf(moved.id, 3)).finishedAt, null, 'the running attempt\'s run stays open');
  });

  it('record-failed: a result that cannot be stored ends the test in ERROR naming the cause', async () => {
    const t = await newTest();
    const a = await begun(t.id);
    const gone = join(storeDir, 'no-such-file');
    await attempts.finish(a, outcome({ files: [{ name: 'x', kind: 'FILE', path: gone, sizeBytes: 1 }] }), LIMITS);
    const r = await row(t.id);
    assert.equal(r.status, 'ERROR');
    const run = await runOf(t.id, 1);
    assert.equal(run.infrastructure, true);
    assert.match(run.errorMessage ?? '', /^the result could not be recorded: .*no-such-file/);
  });

  it('unservable: a QUEUED test of a pool no longer configured ends in ERROR', async () => {
    const t = await newTest();
    await attempts.unservable(t);
    assert.equal((await row(t.id)).status, 'ERROR');
    await eventually('a test event says ERROR', () => seen.test.some((v) => v.id === t.id && v.status === 'ERROR'));
  });

  it('finish: a driver that wrote no log files has its captured bytes as stdout.log and stderr.log', async () => {
    const t = await newTest();
    const a = await begun(t.id);
    await attempts.finish(a, outcome({ stdout: 'a\uFFFDb', stdoutBytes: Buffer.from([0x61, 0x00, 0x62]), stderr: 'e', stderrBytes: Buffer.from('e') }), LIMITS);
    const arts = await db.prisma.artifact.findMany({ where: { runId: a.runId }, orderBy: { name: 'asc' } });
    assert.deepEqual(arts.map((x) => [x.name, x.kind, Number(x.sizeBytes)]), [['stderr.log', 'LOG', 1], ['stdout.log', 'LOG', 3]]);
    assert.deepEqual(readFileSync(join(storeDir, arts[1].storageKey.slice(0, 2), arts[1].storageKey)), Buffer.from([0x61, 0x00, 0x62]));
  });

  it('finish: a blob removed between its store and its rows (its last plan deleted meanwhile) is stored again', async () => {
    const real = new DirectoryArtifactStore(storeDir);
    // the remover's work, between the worker's put and its rows: what the blob lock and the check after the insert are for
    let raced = false;
    const racing = Object.assign(Object.create(real) as DirectoryArtifactStore, {
      putFile: async (p: string) => {
        const r = await real.putFile(p);
        if (!raced) await real.remove(r.key); // once: the worker's second put is not raced
        raced = true;
        return r;
      },
    });
    const service = new AttemptsService({
      logger: quietLogger(), tests: new TestsRepository(db.prisma), plans: new PlansRepository(db.prisma, () => new Date()),
      runs, events, queues, now: () => new Date(), store: racing,
    });
    const t = await newTest();
    const a = await begun(t.id);
    const file = join(storeDir, `src-${randomUUID()}.log`);
    writeFileSync(file, `content ${randomUUID()}\n`);
    await service.finish(a, outcome({ files: [{ name: 'stdout.log', kind: 'LOG', path: file, sizeBytes: 45 }] }), LIMITS);
    assert.equal((await row(t.id)).status, 'PASSED');
    const art = await db.prisma.artifact.findFirstOrThrow({ where: { runId: a.runId, name: 'stdout.log' } });
    assert.equal(await real.has(art.storageKey), true, 'the blob its row references is in the store');
    await service.flush();
  });
});
