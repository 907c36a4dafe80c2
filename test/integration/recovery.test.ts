// Recovery (issue 3): a SIGKILLed worker, a SIGKILLed all-in-one process (with and without the data
// of its Redis) lose no test and finish none twice. Real processes (`node dist/src/main.js …`), real
// PostgreSQL and Redis, real container sandboxes.
//
// Timing: a dead worker's job comes back once its BullMQ lock (10 s, not configurable by env) has
// expired and a stalled check has seen it twice (every 5 s): the two SIGKILL-with-Redis cases below
// wait 10–20 s for that.
//
// Each test checks the essentials first (every test terminal, attempts, output once, one PASSED run,
// no process left), then collects lesser defects (an ERROR with no reason, runs left RUNNING, leaked
// cgroups and sandbox dirs, an unclean SIGTERM exit) into one list asserted empty at the end.
//
// Where the container driver keeps things (as the worker creates it): state dirs under
// <tmpdir>/test-orchestrator/container/<instance>/<envId>, run groups under
// test-orchestrator/<instance>/<envId>-<attempt>-<seq> in each cgroup hierarchy, where <instance> is
// `p<pid>.<start>.<pidns>.<random>` of the process that runs the driver. The driver of the process
// started after a crash sweeps the dead process's instance (preflight).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { Client } from 'pg';
import { PGlite } from '@electric-sql/pglite';
import { findFreePort, isProcessAlive, safeKill, sleep, waitForPidExit } from '../../src/infra/process-utils';
import { gqlOk } from '../helpers/gql';
import {
  embeddedRedisPid,
  processesMentioning,
  spawnOrchestrator,
  startOrchestrator,
  type OrchestratorProcess,
} from '../helpers/orchestrator-process';
import { startTestPostgres } from '../helpers/postgres';
import { startTestRedis } from '../helpers/redis';
import { testImageDir } from '../helpers/sandbox-env';
import { freshPgliteDir } from '../helpers/server';

/** One light CONTAINER pool of capacity 2: two tests run at once, the rest wait in FIFO order. */
/** The image cache the tests' sandboxes use (the one `npm run images` built). */
const IMAGE_DIR = testImageDir();

const POOLS = JSON.stringify([
  {
    name: 'container',
    kind: 'CONTAINER',
    cpus: 1,
    memoryMb: 256,
    image: 'debian-bookworm',
    capacity: 2,
    testTypes: ['UNIT', 'INTEGRATION', 'SECURITY', 'PERFORMANCE'],
  },
]);

const SUBMIT = `mutation($input: SubmitPlanInput!) { submitPlan(input: $input) { id tests(first: 100) { nodes { id name } } } }`;
const TESTS = `query($id: ID!) { plan(id: $id) { tests(first: 100) { nodes {
  id name status attempts startedAt environment { id } result { stdout stderr exitCode errorMessage } } } } }`;
const TERMINAL = new Set(['PASSED', 'FAILED', 'TIMED_OUT', 'ERROR', 'CANCELLED']);

interface TestInput {
  name: string;
  script: string;
  maxRetries?: number;
  timeoutSeconds?: number;
}
interface TestRow {
  id: string;
  name: string;
  status: string;
  attempts: number;
  startedAt: string | null;
  environment: { id: string } | null;
  result: { stdout: string; stderr: string; exitCode: number | null; errorMessage: string | null } | null;
}

/** `sleep 2.123456`: a sleep whose command line names it uniquely on this host (to find it in /proc). */
function marker(seconds: number): string {
  return `${seconds}.${String(Math.floor(Math.random() * 1e6)).padStart(6, '0')}`;
}

async function submit(url: string, name: string, tests: TestInput[]): Promise<{ planId: string; ids: Map<string, string> }> {
  const { submitPlan } = await gqlOk(url, SUBMIT, {
    input: { name, tests: tests.map((t) => ({ type: 'UNIT', timeoutSeconds: 60, ...t })) },
  });
  return { planId: submitPlan.id, ids: new Map(submitPlan.tests.nodes.map((n: { id: string; name: string }) => [n.name, n.id])) };
}

async function testsOf(url: string, planId: string): Promise<Map<string, TestRow>> {
  const { plan } = await gqlOk(url, TESTS, { id: planId });
  return new Map((plan.tests.nodes as TestRow[]).map((t) => [t.name, t]));
}

/** Polls the plan's tests until `done` holds; fails with the last state and `log()` after `timeoutMs`. */
async function waitForTests(
  url: string,
  planId: string,
  what: string,
  done: (tests: Map<string, TestRow>) => boolean,
  timeoutMs: number,
  log: () => string,
  pollMs = 100,
): Promise<Map<string, TestRow>> {
  const deadline = Date.now() + timeoutMs;
  let last: Map<string, TestRow> | undefined;
  for (;;) {
    try {
      last = await testsOf(url, planId);
      if (done(last)) return last;
    } catch (e) {
      if (Date.now() >= deadline) throw e;
    }
    if (Date.now() >= deadline) {
      const state = last ? [...last.values()].map((t) => `${t.name}: ${t.status} attempts ${t.attempts}`).join('\n  ') : 'none';
      throw new Error(`${what}: not within ${timeoutMs} ms; tests:\n  ${state}\nlog:\n${log()}`);
    }
    await sleep(pollMs);
  }
}

const allTerminal = (tests: Map<string, TestRow>) => [...tests.values()].every((t) => TERMINAL.has(t.status));
const running = (...names: string[]) => (tests: Map<string, TestRow>) => names.every((n) => tests.get(n)?.status === 'RUNNING');

/** Resolves when `pred` holds, or returns false after `timeoutMs`. */
async function eventually(pred: () => boolean, timeoutMs: number, pollMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (pred()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(pollMs);
  }
}

/** Waits for a line of the process's (pino JSON) log with this msg. */
async function waitForLog(p: OrchestratorProcess, msg: string, timeoutMs: number): Promise<void> {
  const needle = `"msg":"${msg}"`;
  const ok = await eventually(() => p.stdout().includes(needle) || p.hasExited(), timeoutMs);
  if (!ok || !p.stdout().includes(needle)) {
    throw new Error(`pid ${p.pid}: no "${msg}" in its log within ${timeoutMs} ms${p.hasExited() ? ' (it exited)' : ''}:\n${p.log(40)}`);
  }
}

/** The container driver's shared state dir (its default, as the worker creates it). */
const STATE_BASE = join(tmpdir(), 'test-orchestrator', 'container');
const CGROUP_BASE = 'test-orchestrator';

/** `test-orchestrator` in every cgroup hierarchy (v2, v1 controllers, the hybrid unified tree). */
function cgroupBases(): string[] {
  const roots = ['/sys/fs/cgroup', ...safeReaddir('/sys/fs/cgroup').map((c) => join('/sys/fs/cgroup', c))];
  return roots.map((r) => join(r, CGROUP_BASE)).filter((d) => existsSync(d));
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** The driver host of a worker process: its child running driver-host.js, which owns the sandboxes. */
function driverHostOf(workerPid: number): number {
  for (const entry of safeReaddir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const status = readFileSync(`/proc/${entry}/status`, 'utf8');
      if (!new RegExp(`^PPid:\\s+${workerPid}$`, 'm').test(status)) continue;
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes('driver-host.js')) return Number(entry);
    } catch {
      /* gone meanwhile */
    }
  }
  throw new Error(`no driver host process under pid ${workerPid}`);
}

/** Driver instance names of a process (`p<pid>.…`) found under these parent directories. */
function instancesOf(pid: number, parents: string[]): string[] {
  return parents.flatMap((parent) => safeReaddir(parent).filter((n) => n.startsWith(`p${pid}.`)).map((n) => join(parent, n)));
}

/** The driver instance dirs (state) and parent groups (cgroups, all hierarchies) of process `pid`. */
function driverLeftoversOf(pid: number): string[] {
  return [...instancesOf(pid, [STATE_BASE]), ...instancesOf(pid, cgroupBases())];
}

/**
 * Cgroup directories still named after one of these environments: a run's group is
 * `<envId>-<attempt>-<seq>` under `test-orchestrator/<instance>/` (or, by older versions, directly
 * under `test-orchestrator/`).
 */
function cgroupsOf(envIds: string[]): string[] {
  const found: string[] = [];
  for (const parent of cgroupBases()) {
    const dirs = [parent, ...safeReaddir(parent).map((n) => join(parent, n)).filter(isDir)];
    for (const dir of dirs) for (const name of safeReaddir(dir)) if (envIds.some((id) => name.startsWith(`${id}-`))) found.push(join(dir, name));
  }
  return found;
}

/** State dirs of these environments left under the driver's state dir (any instance). */
function stateDirsOf(envIds: string[]): string[] {
  return safeReaddir(STATE_BASE)
    .map((n) => join(STATE_BASE, n))
    .flatMap((inst) => envIds.map((id) => join(inst, id)))
    .filter((d) => existsSync(d));
}

/** Removes empty cgroup directories, children first (a leak of the code under test must not stay on the host). */
function removeCgroups(dirs: string[]): void {
  for (const d of dirs) {
    for (const child of safeReaddir(d)) if (isDir(join(d, child))) removeCgroups([join(d, child)]);
    try {
      rmdirSync(d);
    } catch {
      // still in use, or gone
    }
  }
}

/** Removes what a dead process's driver left (cgroups, state dirs), after the check reported it. */
function removeLeftovers(paths: string[]): void {
  removeCgroups(paths.filter((p) => p.startsWith('/sys/fs/cgroup/')));
  for (const p of paths.filter((p) => !p.startsWith('/sys/fs/cgroup/'))) rmSync(p, { recursive: true, force: true });
}

/** State and PF_EXITING of a process (`Z`, `R exiting`…), or null when it is gone. */
function procState(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return `${f[0]}${Number(f[6]) & 0x4 ? ' (exiting)' : ''}`;
  } catch {
    return null;
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** SIGKILL, as a crash would: no handler runs; the embedded redis-server (if any) is left an orphan. */
async function crash(p: OrchestratorProcess): Promise<void> {
  safeKill(p.pid, 'SIGKILL');
  const exit = await p.exited;
  assert.equal(exit.signal, 'SIGKILL', `pid ${p.pid} ended by SIGKILL`);
}

/**
 * Per-test scratch: temp dirs, processes, and a last-resort cleanup (SIGKILL of whatever still mentions
 * a marker or a temp dir, embedded Redis included), run by t.after even when the test failed.
 */
function scratch(t: TestContext) {
  const dirs: string[] = [];
  const markers: string[] = [];
  const procs: OrchestratorProcess[] = [];
  const cleanups: (() => unknown)[] = [];
  t.after(async () => {
    await Promise.all(procs.map((p) => p.stop('SIGTERM', 10_000).catch(() => undefined)));
    for (const dir of dirs) {
      const redis = embeddedRedisPid(dir);
      if (redis !== undefined && isProcessAlive(redis)) safeKill(redis, 'SIGKILL');
    }
    for (const m of [...dirs, ...markers]) for (const { pid } of processesMentioning(m)) safeKill(pid, 'SIGKILL');
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => undefined);
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });
  return {
    /** A temp dir of mode 0711 (DATA_DIR: sandbox state is not kept there, but keep it reachable anyway). */
    dir(prefix: string): string {
      const d = mkdtempSync(join(tmpdir(), prefix));
      dirs.push(d);
      chmodSync(d, 0o711);
      return d;
    },
    adopt(dir: string): string {
      dirs.push(dir);
      chmodSync(dir, 0o711);
      return dir;
    },
    marker(seconds: number): string {
      const m = marker(seconds);
      markers.push(m);
      return m;
    },
    track(p: OrchestratorProcess): OrchestratorProcess {
      procs.push(p);
      return p;
    },
    onCleanup(c: () => unknown): void {
      cleanups.push(c);
    },
    /** Nothing mentions a temp dir or a marker any more (sandboxes, redis-server, orchestrators). */
    async assertNothingLeft(what: string): Promise<void> {
      const left = () => [...dirs, ...markers].flatMap((m) => processesMentioning(m));
      await eventually(() => left().length === 0, 5_000);
      assert.deepEqual(left(), [], `${what}: processes left behind`);
    },
  };
}

describe('recovery', () => {
  it('SIGKILL of a worker: its running tests are taken over and finish once; a test with no retries left ends in ERROR', async (t) => {
    const s = scratch(t);
    const [pg, redis] = await Promise.all([startTestPostgres(), startTestRedis()]);
    s.onCleanup(() => pg.stop());
    s.onCleanup(() => redis.stop());
    const databaseUrl = await pg.createDatabase();
    const env = { DATABASE_URL: databaseUrl, REDIS_URL: redis.url, REDIS_PREFIX: `r${randomUUID().slice(0, 8)}`, POOLS, IMAGE_DIR };
    const root = s.dir('orch-recov-worker-');
    const dataDir = (name: string) => {
      const d = join(root, name);
      mkdirSync(d, { recursive: true, mode: 0o711 });
      return d;
    };

    const api = s.track(await startOrchestrator('serve', { env, dataDir: dataDir('api') }));
    const a = s.track(await spawnOrchestrator('worker', { env, dataDir: dataDir('worker-a') }));
    await waitForLog(a, 'worker started', 60_000);

    const victim = s.marker(4);
    const doomed = s.marker(4);
    const { planId, ids } = await submit(api.url, 'worker-crash', [
      { name: 'victim', script: `sleep ${victim}; echo done` },
      // Its worker is lost once and it has no retry left: ERROR, never run again (a test whose
      // environment keeps dying is not retried forever).
      { name: 'doomed', script: `sleep ${doomed}; echo doomed-ran`, maxRetries: 0 },
      { name: 'quick-1', script: 'echo quick-1' },
      { name: 'quick-2', script: 'echo quick-2' },
      { name: 'quick-3', script: 'echo quick-3' },
    ]);
    await waitForTests(api.url, planId, 'victim and doomed RUNNING on worker A', running('victim', 'doomed'), 30_000, () => a.log(40));
    // RUNNING is recorded before the sandbox starts: wait for the sleep itself.
    const sleeping = await eventually(() => processesMentioning(victim).length > 0 && processesMentioning(doomed).length > 0, 10_000);
    assert.ok(sleeping, `the victim and doomed sleep in sandboxes of worker A; its log:\n${a.log(20)}`);
    // The bwrap command lines of A's sandboxes name their work dirs, below the driver instance dir of
    // A's driver host (the child process that forks A's sandboxes).
    const aHost = driverHostOf(a.pid);
    const aSandboxes = join(STATE_BASE, `p${aHost}.`);
    assert.ok(processesMentioning(aSandboxes).some((p) => p.cmdline.includes('bwrap')), `bwrap of worker A runs with a work dir under ${aSandboxes}*`);
    assert.ok(driverLeftoversOf(aHost).length > 0, `worker A's driver instance (state dir, cgroups) under ${STATE_BASE} and test-orchestrator/`);

    await crash(a);
    // bwrap runs with --die-with-parent: the sandboxes of A die with it.
    const sandboxesGone = await eventually(() => processesMentioning(victim).length + processesMentioning(doomed).length === 0, 5_000);
    assert.ok(sandboxesGone, `sandbox processes of the dead worker still run: ${JSON.stringify([...processesMentioning(victim), ...processesMentioning(doomed)])}`);
    await eventually(() => processesMentioning(aSandboxes).length === 0, 5_000);
    assert.deepEqual(processesMentioning(aSandboxes), [], 'nothing of worker A runs any more (bwrap included)');

    // What A left in the database (nothing changes it until another worker comes).
    const db = new Client({ connectionString: databaseUrl });
    await db.connect();
    s.onCleanup(() => db.end());
    const atCrash = new Map(
      (await db.query<{ name: string; status: string; attempts: number }>('SELECT name, status, attempts FROM test_case WHERE plan_id = $1', [planId])).rows.map(
        (r) => [r.name, r],
      ),
    );
    assert.deepEqual(
      [atCrash.get('victim')?.status, atCrash.get('victim')?.attempts, atCrash.get('doomed')?.status, atCrash.get('doomed')?.attempts],
      ['RUNNING', 1, 'RUNNING', 1],
    );

    const crashedAt = Date.now();
    const b = s.track(await spawnOrchestrator('worker', { env, dataDir: dataDir('worker-b') }));
    const final = await waitForTests(api.url, planId, 'every test terminal after worker B took over', allTerminal, 60_000, () => b.log(40), 250);
    const recoveryMs = Date.now() - crashedAt;

    const v = final.get('victim')!;
    assert.deepEqual([v.status, v.attempts], ['PASSED', 2], `victim; B's log:\n${b.log(30)}`);
    assert.equal(v.result?.stdout, 'done\n', 'the result is the second attempt, run once');
    const d = final.get('doomed')!;
    assert.deepEqual([d.status, d.attempts], ['ERROR', 1], `doomed is not run again; B's log:\n${b.log(30)}`);
    for (const name of ['quick-1', 'quick-2', 'quick-3']) {
      const q = final.get(name)!;
      const before = atCrash.get(name)!;
      // A test A had finished keeps its attempt; one A was running is taken over (attempt + 1); a queued one runs once.
      const expected = before.status === 'PASSED' ? before.attempts : before.status === 'RUNNING' ? before.attempts + 1 : 1;
      assert.deepEqual([q.status, q.attempts, q.result?.stdout], ['PASSED', expected, `${name}\n`], `${name} (was ${before.status} at the crash)`);
    }
    assert.match(b.stdout(), /taking over a test whose worker was lost/);

    // The database: one PASSED run per PASSED test, none for the ERROR one; the lost attempts are not PASSED.
    const runs = (
      await db.query<{ name: string; attempt: number; status: string }>(
        'SELECT c.name, r.attempt, r.status FROM test_run r JOIN test_case c ON c.id = r.test_id WHERE c.plan_id = $1 ORDER BY c.name, r.attempt',
        [planId],
      )
    ).rows;
    const passedRuns = (await db.query<{ test_id: string; passed: number; runs: number }>(
      `SELECT test_id, (count(*) FILTER (WHERE status = 'PASSED'))::int AS passed, count(*)::int AS runs
         FROM test_run WHERE test_id = ANY($1::uuid[]) GROUP BY test_id`,
      [[...ids.values()]],
    )).rows;
    const byId = new Map(passedRuns.map((r) => [r.test_id, r]));
    for (const [name, id] of ids) {
      const row = final.get(name)!;
      assert.equal(byId.get(id)?.passed ?? 0, row.status === 'PASSED' ? 1 : 0, `${name}: PASSED runs; runs: ${JSON.stringify(runs)}`);
      assert.equal(byId.get(id)?.runs ?? 0, row.attempts, `${name}: one run per attempt; runs: ${JSON.stringify(runs)}`);
    }
    const lost = runs.find((r) => r.name === 'victim' && r.attempt === 1);
    assert.ok(lost && lost.status !== 'PASSED', `the lost attempt is not PASSED: ${JSON.stringify(lost)}`);

    t.diagnostic(`recovered in ${recoveryMs} ms after the SIGKILL`);
    const [eb, eapi] = await Promise.all([b.stop(), api.stop()]);
    await s.assertNothingLeft('after the worker crash');
    // Checked last, all together: defects, but less fundamental than losing or doubling a test.
    const defects: string[] = [];
    if (!d.result?.errorMessage) defects.push(`the ERROR test has no errorMessage naming its fault (result ${JSON.stringify(d.result)})`);
    if (eb.code !== 0 || eapi.code !== 0) defects.push(`SIGTERM exit codes: worker B ${eb.code}, serve ${eapi.code} (expected 0, 0)`);
    const lostEnvs = (await db.query<{ environment_id: string }>(
      'SELECT DISTINCT r.environment_id FROM test_run r JOIN test_case c ON c.id = r.test_id WHERE c.plan_id = $1 AND r.worker_id LIKE $2',
      [planId, `%:${a.pid}:%`],
    )).rows.map((r) => r.environment_id);
    if (lostEnvs.length === 0) defects.push('no environment of the dead worker found in test_run');
    const leftCgroups = cgroupsOf(lostEnvs);
    if (leftCgroups.length) defects.push(`cgroups of the dead worker's sandboxes left on the host: ${leftCgroups.join(' ')}`);
    removeCgroups(leftCgroups);
    const leftDirs = stateDirsOf(lostEnvs);
    if (leftDirs.length) defects.push(`state dirs of the dead worker's sandboxes left on the host: ${leftDirs.join(' ')}`);
    // A's driver host cleaned up when A died, or worker B's driver swept what it left.
    const leftOfA = driverLeftoversOf(aHost);
    if (leftOfA.length) defects.push(`the dead worker's driver instance left after worker B started: ${leftOfA.join(' ')}`);
    removeLeftovers([...leftDirs, ...leftOfA]);
    const openRuns = runs.filter((r) => r.status === 'RUNNING');
    if (openRuns.length) defects.push(`runs of lost attempts still RUNNING in test_run: ${JSON.stringify(openRuns)}`);
    assert.deepEqual(defects, []);
  });

  for (const redisLost of [false, true]) {
    const title = redisLost
      ? 'SIGKILL of the all-in-one process and loss of its Redis data: the reconciler re-enqueues from the database; every test finishes once'
      : 'SIGKILL of the all-in-one process: after a restart on the same DATA_DIR every queued and running test finishes once';
    it(title, async (t) => {
      const s = scratch(t);
      const dataDir = s.adopt(await freshPgliteDir()); // a migrated embedded database: no initdb here
      const env = { POOLS, IMAGE_DIR };
      const first = s.track(await startOrchestrator('start', { dataDir, env }));

      const longs = [s.marker(3), s.marker(3)];
      const { planId } = await submit(first.url, redisLost ? 'crash-redis-lost' : 'crash', [
        { name: 'long-1', script: `sleep ${longs[0]}; echo long-1` },
        { name: 'long-2', script: `sleep ${longs[1]}; echo long-2` },
        { name: 'queued-1', script: 'echo queued-1' },
        { name: 'queued-2', script: `sleep 1; echo queued-2` },
        { name: 'queued-3', script: 'echo queued-3' },
      ]);
      await waitForTests(first.url, planId, 'long-1 and long-2 RUNNING', running('long-1', 'long-2'), 30_000, () => first.log(40), 50);
      // RUNNING is recorded before the sandbox starts: crash while both sleep in their sandboxes.
      const sleeping = await eventually(() => longs.every((m) => processesMentioning(m).length > 0), 10_000);
      assert.ok(sleeping, `long-1 and long-2 sleep in their sandboxes; log:\n${first.log(20)}`);
      const atCrash = await testsOf(first.url, planId);
      const firstHost = driverHostOf(first.pid);
      await crash(first);
      // Capacity 2, FIFO: the others had not started.
      assert.deepEqual(
        [...atCrash.values()].map((x) => [x.name, x.status, x.attempts]),
        [['long-1', 'RUNNING', 1], ['long-2', 'RUNNING', 1], ['queued-1', 'QUEUED', 0], ['queued-2', 'QUEUED', 0], ['queued-3', 'QUEUED', 0]],
      );
      const sandboxesGone = await eventually(() => longs.every((m) => processesMentioning(m).length === 0), 5_000);
      assert.ok(sandboxesGone, 'the sandboxes died with the process');
      // Its bwrap processes (their command lines name work dirs below its driver host's instance dir) too.
      const firstSandboxes = join(STATE_BASE, `p${firstHost}.`);
      await eventually(() => processesMentioning(firstSandboxes).length === 0, 5_000);
      assert.deepEqual(processesMentioning(firstSandboxes), [], 'nothing of the killed process runs any more (bwrap included)');
      assert.ok(!isProcessAlive(firstHost) || (await eventually(() => !isProcessAlive(firstHost), 6_000)), 'the driver host ends with its process');

      const orphan = embeddedRedisPid(dataDir, first.pid);
      assert.ok(orphan !== undefined && isProcessAlive(orphan), 'the embedded redis-server outlives a SIGKILL (an orphan)');
      if (redisLost) {
        safeKill(orphan, 'SIGKILL');
        assert.ok(await waitForPidExit(orphan, 5_000), 'orphan redis-server killed');
        const removed: string[] = [];
        for (const f of readdirSync(dataDir)) {
          if (f === 'appendonlydir' || f.endsWith('.aof') || f === 'dump.rdb') {
            rmSync(join(dataDir, f), { recursive: true, force: true });
            removed.push(f);
          }
        }
        assert.ok(removed.length > 0, `Redis had data files in DATA_DIR: ${readdirSync(dataDir).join(' ')}`);
      }

      const crashedAt = Date.now();
      const second = s.track(await startOrchestrator('start', { dataDir, env }));
      const final = await waitForTests(second.url, planId, 'every test terminal after the restart', allTerminal, 60_000, () => second.log(40), 250);
      const recoveryMs = Date.now() - crashedAt;

      for (const name of ['long-1', 'long-2', 'queued-1', 'queued-2', 'queued-3']) {
        const x = final.get(name)!;
        // A test that was running lost attempt 1 and ran attempt 2; a queued one ran once.
        const attempts = name.startsWith('long') ? 2 : 1;
        assert.deepEqual([x.status, x.attempts], ['PASSED', attempts], `${name}; log after the restart:\n${second.log(30)}`);
        assert.equal(x.result?.stdout, `${name}\n`, `${name}: the output of one run, once`);
      }
      if (redisLost) {
        assert.match(second.stdout(), /a running test lost its job: handed back/);
        assert.match(second.stdout(), /queued tests had no job: queued them again/);
      } else {
        assert.match(second.stdout(), /found a redis-server left running by a previous run/);
        assert.match(second.stdout(), /taking over a test whose worker was lost/);
      }
      assert.ok(!isProcessAlive(orphan), 'the orphan redis-server was replaced');

      t.diagnostic(`recovered in ${recoveryMs} ms after the SIGKILL`);
      const exit = await second.stop('SIGTERM', 25_000);
      await s.assertNothingLeft('after the restart');
      const defects: string[] = [];
      if (exit.code !== 0 || exit.signal !== null || exit.killed) {
        defects.push(`SIGTERM exit: code ${exit.code}, signal ${exit.signal}, killed ${exit.killed} (expected 0); log:\n${second.log(8)}`);
      }
      const lostEnvs = ['long-1', 'long-2'].map((n) => atCrash.get(n)?.environment?.id).filter((id): id is string => !!id);
      if (lostEnvs.length !== 2) defects.push(`the two running tests had environments at the crash: ${JSON.stringify(lostEnvs)}`);
      const leftCgroups = cgroupsOf(lostEnvs);
      if (leftCgroups.length) defects.push(`cgroups of the killed sandboxes left on the host: ${leftCgroups.join(' ')}`);
      removeCgroups(leftCgroups);
      const leftDirs = stateDirsOf(lostEnvs);
      if (leftDirs.length) defects.push(`state dirs of the killed sandboxes left after the restart: ${leftDirs.join(' ')}`);
      // The restarted process's driver swept what the killed one's left (instance state dir, parent groups).
      const leftOfFirst = driverLeftoversOf(firstHost);
      if (leftOfFirst.length) defects.push(`the killed process's driver instance left after the restart: ${leftOfFirst.join(' ')}`);
      removeLeftovers([...leftDirs, ...leftOfFirst]);
      assert.deepEqual(defects, []);
    });
  }
  it('five SIGKILLs of the process group of `start` in a row, each restarted at once: every start succeeds, every test ends exactly once', async (t) => {
    const s = scratch(t);
    const dataDir = s.adopt(await freshPgliteDir());
    // The same DATA_DIR and PORT each time, as a supervisor (systemd Restart=always, docker restart) restarts it.
    const port = await findFreePort();
    const env = { POOLS, IMAGE_DIR };
    const spawnStart = () => spawnOrchestrator('start', { dataDir, env, port, inGroup: true });
    let current = s.track(await spawnStart());
    await current.waitReady(60_000);
    const sleeps = Array.from({ length: 6 }, () => s.marker(2));
    const { planId, ids } = await submit(
      current.url,
      'five-crashes',
      sleeps.map((m, i) => ({ name: `t-${i}`, script: `sleep ${m}; echo t-${i}`, maxRetries: 10 })),
    );
    const lingering: string[] = [];
    for (let round = 1; round <= 5; round++) {
      // Crash while tests run: some test RUNNING and sleeping in its sandbox (unless all have finished).
      const busy = await eventually(() => sleeps.some((m) => processesMentioning(m).length > 0), 30_000);
      const before = current;
      before.killGroup();
      // Restarted at once: no wait for the old process to be reaped (its parent shell is dead: init reaps it, later).
      current = s.track(await spawnStart());
      const oldState = procState(before.pid);
      if (oldState) lingering.push(`round ${round}: the killed process was still ${oldState} when the new one started`);
      await current.waitReady(60_000).catch((e: Error) => {
        throw new Error(`restart ${round} of 5 (${busy ? 'tests were running' : 'no test was running'}) failed: ${e.message}`);
      });
      assert.equal((await before.exited).signal, 'SIGKILL', `round ${round}: the shell of the old process died of SIGKILL`);
    }
    const final = await waitForTests(current.url, planId, 'every test terminal after five crashes', allTerminal, 120_000, () => current.log(40), 250);
    for (const [name, x] of final) {
      assert.deepEqual([x.status, x.result?.stdout], ['PASSED', `${name}\n`], `${name} (attempts ${x.attempts}): passed, its output once; log:\n${current.log(20)}`);
    }
    const exit = await current.stop('SIGTERM', 25_000);
    assert.equal(exit.code, 0, `the last process stops cleanly on SIGTERM; log:\n${current.log(10)}`);
    // In SQL, with the embedded database closed: one PASSED run per test, one run per attempt.
    const pglite = await PGlite.create(join(dataDir, 'pglite'));
    s.onCleanup(() => pglite.close());
    const rows = (
      await pglite.query<{ id: string; attempts: number; passed: number; runs: number }>(
        `SELECT c.id, c.attempts, (count(r.id) FILTER (WHERE r.status = 'PASSED'))::int AS passed, count(r.id)::int AS runs
           FROM test_case c LEFT JOIN test_run r ON r.test_id = c.id WHERE c.plan_id = $1 GROUP BY c.id, c.attempts`,
        [planId],
      )
    ).rows;
    assert.equal(rows.length, ids.size);
    for (const r of rows) assert.deepEqual([r.passed, r.runs], [1, r.attempts], `test ${r.id}: exactly one PASSED run, one run per attempt`);
    t.diagnostic(`${lingering.length} of 5 restarts began while the killed process was still there: ${lingering.join('; ') || '-'}`);
    await s.assertNothingLeft('after five crashes');
  });

  it('SIGTERM mid-run: the test handed back keeps its place, ahead of every equal-priority test submitted after it', async (t) => {
    const s = scratch(t);
    const dataDir = s.adopt(await freshPgliteDir());
    // Capacity 1: one test runs, the others wait in FIFO order behind it.
    const pools = JSON.stringify([{ ...JSON.parse(POOLS)[0], capacity: 1 }]);
    const env = { POOLS: pools, IMAGE_DIR };
    const first = s.track(await startOrchestrator('start', { dataDir, env }));
    // Longer than the worker's 10 s shutdown grace, so the run is stopped and handed back.
    const long = s.marker(20);
    const a = await submit(first.url, 'handed-back', [
      { name: 'first', script: `sleep ${long}; echo first` },
      { name: 'later-1', script: 'echo later-1' },
      { name: 'later-2', script: 'echo later-2' },
    ]);
    const b = await submit(first.url, 'submitted-after', [{ name: 'later-3', script: 'echo later-3' }]);
    await waitForTests(first.url, a.planId, 'first RUNNING', running('first'), 30_000, () => first.log(40), 50);
    assert.ok(await eventually(() => processesMentioning(long).length > 0, 10_000), `first sleeps in its sandbox; log:\n${first.log(20)}`);
    const exit = await first.stop('SIGTERM', 30_000);
    assert.deepEqual([exit.code, exit.killed], [0, false], `a clean stop; log:\n${first.log(20)}`);
    assert.match(first.stdout(), /handed back: the worker is shutting down/);

    const second = s.track(await startOrchestrator('start', { dataDir, env }));
    const done = (plan: string) => waitForTests(second.url, plan, `plan ${plan} terminal`, allTerminal, 90_000, () => second.log(40), 250);
    const all = new Map([...(await done(a.planId)), ...(await done(b.planId))]);
    const f = all.get('first')!;
    assert.deepEqual([f.status, f.attempts, f.result?.stdout], ['PASSED', 2, 'first\n'], 'the handed-back test ran again, once');
    const order = [...all.values()].sort((x, y) => Date.parse(x.startedAt!) - Date.parse(y.startedAt!)).map((x) => x.name);
    assert.deepEqual(order, ['first', 'later-1', 'later-2', 'later-3'], 'the handed-back test runs before every test submitted after it');
    await second.stop('SIGTERM', 25_000);
    await s.assertNothingLeft('after the hand-back');
  });

  it('a test whose every attempt kills its process ends in ERROR when its retry budget is spent, across restarts, and is not run again', async (t) => {
    const s = scratch(t);
    const dataDir = s.adopt(await freshPgliteDir());
    const env = { POOLS, IMAGE_DIR };
    const marker = s.marker(3);
    let proc = s.track(await startOrchestrator('start', { dataDir, env }));
    const { planId } = await submit(proc.url, 'killer', [{ name: 'killer', script: `sleep ${marker}; echo killer-ran`, maxRetries: 1 }]);
    // maxRetries 1: attempts 1 and 2 each take their process down (a SIGKILL while the test runs,
    // as a test that exhausts its host would); the process started after the second finds the
    // budget spent.
    for (const attempt of [1, 2]) {
      const at = await waitForTests(proc.url, planId, `killer RUNNING, attempt ${attempt}`, (m) => m.get('killer')?.status === 'RUNNING' && m.get('killer')?.attempts === attempt, 90_000, () => proc.log(30), 100);
      assert.equal(at.get('killer')!.attempts, attempt);
      assert.ok(await eventually(() => processesMentioning(marker).length > 0, 10_000), `attempt ${attempt} sleeps in its sandbox; log:\n${proc.log(20)}`);
      await crash(proc);
      assert.ok(await eventually(() => processesMentioning(marker).length === 0, 5_000), 'its sandbox died with it');
      proc = s.track(await startOrchestrator('start', { dataDir, env }));
    }
    const final = await waitForTests(proc.url, planId, 'killer terminal after the last restart', allTerminal, 90_000, () => proc.log(30), 250);
    const k = final.get('killer')!;
    assert.deepEqual([k.status, k.attempts], ['ERROR', 2], `log after the last restart:\n${proc.log(30)}`);
    assert.match(k.result?.errorMessage ?? '', /worker running attempt 2 was lost/);
    // and it stays so: not run a third time
    await sleep(3_000);
    const later = (await testsOf(proc.url, planId)).get('killer')!;
    assert.deepEqual([later.status, later.attempts], ['ERROR', 2]);
    assert.deepEqual(processesMentioning(marker), [], 'never started again');
    await proc.stop('SIGTERM', 25_000);
  });
});
