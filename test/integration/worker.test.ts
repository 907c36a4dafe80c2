// Tests run for real: submitted through the API, executed in sandboxes by a worker, results as users see them.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Client } from 'graphql-ws';
import { gqlOk, sleep, subscribe, wsClient } from '../helpers/gql';
import { startTestRedis, type TestRedis } from '../helpers/redis';
import { submitTests, testsByName, waitForPlan } from '../helpers/plans';
import { startTestServer, type TestServer } from '../helpers/server';

const PLAN = `query($id: ID!) { plan(id: $id) { id status counts { passed failed timedOut error cancelled running queued total }
  tests(first: 100) { nodes { id name status attempts startedAt finishedAt environment { id pool }
    result { exitCode signal stdout stderr outputTruncated durationMs timedOut errorMessage metrics { cpuTimeMs peakMemoryBytes }
      artifacts { name kind sizeBytes sha256 url } } } } } }`;

const POOLS = JSON.stringify([
  { name: 'container', kind: 'CONTAINER', cpus: 1, memoryMb: 256, image: 'debian-bookworm', capacity: 2, pids: 64, testTypes: ['UNIT', 'INTEGRATION', 'SECURITY'] },
  { name: 'solo', kind: 'CONTAINER', cpus: 1, memoryMb: 256, image: 'debian-bookworm', capacity: 1, pids: 64, tags: ['solo'], testTypes: ['UNIT', 'PERFORMANCE'] },
]);

/** A sleep duration no other process on the host uses: its command line marks the test's processes. */
const uniqueSleep = () => `${3000 + Math.floor(Math.random() * 1000)}.${Math.floor(Math.random() * 1e6)}`;

/** Processes on the host whose command line holds `marker`. */
function hostProcesses(marker: string): string[] {
  try {
    return execFileSync('pgrep', ['-af', marker], { encoding: 'utf8' }).trim().split('\n').filter((l) => l && !l.includes('pgrep'));
  } catch {
    return [];
  }
}

describe('running tests in sandboxes', () => {
  let redis: TestRedis;
  let server: TestServer;
  let url: string;
  let ws: Client;

  before(async () => {
    redis = await startTestRedis();
    server = await startTestServer({ redisUrl: redis.url, worker: true, env: { POOLS, MAX_OUTPUT_BYTES: '4096', WORKER_HEARTBEAT_MS: '1000' } });
    url = server.url;
    ws = wsClient(url);
  });
  after(async () => {
    await ws?.dispose();
    await server?.stop();
    await redis?.stop();
  });

  async function runPlan(tests: object[], opts: { priority?: number; wait?: boolean } = {}) {
    const id = await submitTests(url, tests, { priority: opts.priority ?? 0 });
    if (opts.wait === false) return id;
    return waitPlan(id);
  }
  const waitPlan = (id: string, timeoutMs = 60_000) => waitForPlan(url, PLAN, id, { timeoutMs });
  const byName = testsByName;

  it('reaches PASSED, FAILED (exit code, signal), TIMED_OUT with the captured fields', async () => {
    const marker = uniqueSleep();
    const plan = await runPlan([
      { name: 'passes', type: 'UNIT', script: 'echo "hello $GREETING"; echo warn >&2', env: [{ name: 'GREETING', value: 'world' }] },
      { name: 'exits-3', type: 'UNIT', script: 'echo about to fail; echo "assertion failed: 1 != 2" >&2; exit 3' },
      { name: 'segfaults', type: 'UNIT', script: 'kill -SEGV $$' },
      { name: 'shebang', type: 'UNIT', script: '#!/bin/bash\necho "bash ${BASH_VERSINFO[0]}"' },
      // a double-forked daemon that outlives its parent must die at the timeout too
      { name: 'hangs', type: 'UNIT', timeoutSeconds: 2, script: `echo started; (setsid sh -c 'exec sleep ${marker}' &) ; exec sleep ${marker}` },
      { name: 'chatty', type: 'UNIT', script: 'yes 0123456789 | head -c 100000' },
      // a few hundred ms of CPU: its cpuTimeMs must show it
      { name: 'busy', type: 'UNIT', script: 'i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; echo $i' },
    ]);
    assert.equal(plan.status, 'FAILED');
    assert.deepEqual({ ...plan.counts }, { passed: 4, failed: 2, timedOut: 1, error: 0, cancelled: 0, running: 0, queued: 0, total: 7 });
    const t = byName(plan);
    assert.equal(t.passes.status, 'PASSED');
    assert.equal(t.passes.attempts, 1);
    assert.equal(t.passes.result.exitCode, 0);
    assert.equal(t.passes.result.stdout, 'hello world\n');
    assert.equal(t.passes.result.stderr, 'warn\n');
    assert.equal(t.passes.result.errorMessage, null);
    assert.ok(t.passes.result.durationMs > 0);
    assert.ok(t.passes.result.metrics.peakMemoryBytes > 0, JSON.stringify(t.passes.result.metrics));
    assert.equal(t.busy.result.stdout, '300000\n');
    assert.ok(t.busy.result.metrics.cpuTimeMs > 0, `a busy script used CPU: ${JSON.stringify(t.busy.result.metrics)}`);
    assert.ok(t.passes.startedAt && t.passes.finishedAt && t.passes.environment.pool === 'container');

    assert.equal(t['exits-3'].status, 'FAILED');
    assert.equal(t['exits-3'].result.exitCode, 3);
    assert.equal(t['exits-3'].result.signal, null);
    assert.equal(t['exits-3'].result.stdout, 'about to fail\n');
    assert.equal(t['exits-3'].result.errorMessage, 'exit code 3: assertion failed: 1 != 2');

    assert.equal(t.segfaults.status, 'FAILED');
    assert.equal(t.segfaults.result.exitCode, null);
    assert.equal(t.segfaults.result.signal, 'SIGSEGV');
    assert.match(t.segfaults.result.errorMessage, /SIGSEGV/);

    assert.equal(t.shebang.result.stdout, 'bash 5\n');

    assert.equal(t.hangs.status, 'TIMED_OUT');
    assert.equal(t.hangs.result.timedOut, true);
    assert.equal(t.hangs.result.stdout, 'started\n', 'output captured up to the timeout');
    assert.match(t.hangs.result.errorMessage, /timed out after 2 s/);
    assert.ok(t.hangs.result.durationMs >= 2000 && t.hangs.result.durationMs < 10_000);
    assert.deepEqual(hostProcesses(marker), [], 'no process of the timed-out test survives');

    assert.equal(t.chatty.status, 'PASSED');
    assert.equal(t.chatty.result.outputTruncated, true, 'stdout capped at MAX_OUTPUT_BYTES');
    assert.ok(Buffer.byteLength(t.chatty.result.stdout) <= 4096);
  });

  it('keeps the host out of reach: no host /tmp, no loopback API port, no writes to /etc', async () => {
    const secret = `/tmp/orch-secret-${randomUUID()}`;
    writeFileSync(secret, 'top secret');
    const pwned = `/etc/orch-pwned-${randomUUID().slice(0, 8)}`;
    const port = new URL(url).port;
    try {
      const plan = await runPlan([
        { name: 'reads-host-tmp', type: 'SECURITY', script: `cat ${secret}` },
        { name: 'connects-to-api', type: 'UNIT', script: `exec 3<>/dev/tcp/127.0.0.1/${port} && echo connected`.replace(/^/, '#!/bin/bash\n') },
        { name: 'writes-etc', type: 'UNIT', script: `touch ${pwned} || exit 1; echo wrote` },
        { name: 'who-am-i', type: 'UNIT', script: 'id -u; cat /proc/self/status | grep -E "^Cap(Eff|Bnd)"; ls /proc | grep -cE "^[0-9]+$"' },
      ]);
      const t = byName(plan);
      assert.equal(t['reads-host-tmp'].status, 'FAILED');
      assert.doesNotMatch(t['reads-host-tmp'].result.stdout, /top secret/);
      assert.equal(t['connects-to-api'].status, 'FAILED', JSON.stringify(t['connects-to-api'].result));
      assert.doesNotMatch(t['connects-to-api'].result.stdout, /connected/);
      assert.equal(t['writes-etc'].status, 'FAILED');
      assert.equal(existsSync(pwned), false);
      const who = t['who-am-i'].result.stdout.trim().split('\n');
      assert.equal(who[0], '65534', 'an unprivileged uid');
      assert.match(who[1], /CapEff:\s+0+$/, 'no capabilities');
      assert.ok(Number(who[who.length - 1]) < 10, `its own PID namespace: saw ${who[who.length - 1]} processes`);
    } finally {
      rmSync(secret, { force: true });
      rmSync(pwned, { force: true });
    }
  });

  it('ends a fork bomb at its process limit and a memory hog at its memory limit, leaving the host alone', async () => {
    const marker = `orchbomb${randomUUID().slice(0, 6)}`;
    const plan = await runPlan([
      { name: 'fork-bomb', type: 'UNIT', timeoutSeconds: 8, script: `#!/bin/bash\n${marker}() { ${marker} | ${marker} & }; ${marker}; sleep 5; echo survived` },
      { name: 'memory-hog', type: 'UNIT', timeoutSeconds: 20, script: `perl -e '$x = "a" x (1024 * 1024 * 1024); print "allocated\\n"'` },
    ]);
    const t = byName(plan);
    // The user sees the limit stop it: FAILED, and the message names the process limit (the pool's pids: 64).
    assert.equal(t['fork-bomb'].status, 'FAILED', JSON.stringify(t['fork-bomb'].result));
    assert.match(t['fork-bomb'].result.errorMessage, /^reached its process limit of 64 processes \(pids\)/);
    assert.ok(t['fork-bomb'].result.durationMs < 15_000);
    assert.deepEqual(hostProcesses(marker), [], 'no process of the fork bomb is left');
    assert.equal(t['memory-hog'].status, 'FAILED', JSON.stringify(t['memory-hog'].result));
    assert.match(t['memory-hog'].result.errorMessage, /exceeded its memory limit of 256 MB/);
    assert.doesNotMatch(t['memory-hog'].result.stdout, /allocated/);
    // the worker goes on with other tests
    const next = await runPlan([{ name: 'after', type: 'UNIT', script: 'echo fine' }]);
    assert.equal(next.status, 'PASSED');
  });

  it('collects artifacts and serves their bytes', async () => {
    const plan = await runPlan([
      { name: 'makes-files', type: 'UNIT', artifactPaths: ['out/*.txt', 'report.xml'], script: 'mkdir -p out; echo one > out/a.txt; echo two > out/b.txt; echo "<r/>" > report.xml; echo skip > out/c.log' },
    ]);
    const r = byName(plan)['makes-files'].result;
    const names = r.artifacts.map((a: any) => a.name).sort();
    assert.deepEqual(names, ['out/a.txt', 'out/b.txt', 'report.xml', 'stderr.log', 'stdout.log']);
    const a = r.artifacts.find((x: any) => x.name === 'out/a.txt');
    const res = await fetch(`${url}${a.url}`);
    assert.equal(res.status, 200);
    const bytes = Buffer.from(await res.arrayBuffer());
    assert.equal(bytes.toString(), 'one\n');
    assert.equal(a.sha256, createHash('sha256').update(bytes).digest('hex'));
    assert.equal(a.kind, 'FILE');
    assert.equal((await fetch(`${url}/artifacts/${randomUUID()}`)).status, 404);
  });

  it('starts integration services beside the test and waits for their ready check', async () => {
    const plan = await runPlan([
      {
        name: 'with-service',
        type: 'INTEGRATION',
        services: [{ name: 'marker', command: 'sleep 0.5; echo up > /tmp/svc-ready; exec sleep 3600', readyCheck: 'test -f /tmp/svc-ready' }],
        script: 'cat /tmp/svc-ready',
      },
    ]);
    const t = byName(plan)['with-service'];
    assert.equal(t.status, 'PASSED', JSON.stringify(t.result));
    assert.equal(t.result.stdout, 'up\n');
  });

  it('runs higher priority first, FIFO among equals, never preempting a running test', async () => {
    const blocker = await runPlan([{ name: 'blocker', type: 'UNIT', requirements: { tags: ['solo'] }, script: 'sleep 1.5; echo done' }], { wait: false });
    await waitForStatus(blocker, 'RUNNING');
    const solo = (n: string) => ({ name: n, type: 'UNIT', requirements: { tags: ['solo'] }, script: 'true' });
    const low1 = await runPlan([solo('low-a'), solo('low-b')], { priority: 0, wait: false });
    const high = await runPlan([solo('high-a'), solo('high-b')], { priority: 10, wait: false });
    const low2 = await runPlan([solo('low-c')], { priority: 0, wait: false });
    const plans = [await waitPlan(blocker), await waitPlan(low1), await waitPlan(high), await waitPlan(low2)];
    const all = plans.flatMap((p) => p.tests.nodes);
    const order = all.sort((a: any, b: any) => Date.parse(a.startedAt) - Date.parse(b.startedAt)).map((t: any) => t.name);
    assert.deepEqual(order, ['blocker', 'high-a', 'high-b', 'low-a', 'low-b', 'low-c']);
    const b = all.find((t: any) => t.name === 'blocker');
    assert.equal(b.status, 'PASSED', 'the running test was not preempted');
    assert.equal(b.result.stdout, 'done\n');
  });

  async function waitForStatus(planId: string, status: string) {
    for (let i = 0; i < 200; i++) {
      const { plan } = await gqlOk(url, PLAN, { id: planId });
      if (plan.tests.nodes.some((t: any) => t.status === status)) return plan.tests.nodes.find((t: any) => t.status === status);
      await sleep(50);
    }
    throw new Error(`no test of plan ${planId} reached ${status}`);
  }

  it('cancels a running test: killed at once, CANCELLED, its environment reset for the next test', async () => {
    const marker = uniqueSleep();
    // In the one-environment pool, so the next test there runs in the environment this one leaves.
    const planId = await runPlan(
      [{ name: 'long', type: 'UNIT', requirements: { tags: ['solo'] }, script: `mkdir -p /work/sub; echo left > /work/sub/file; touch /work/.hidden; echo begun; exec sleep ${marker}` }],
      { wait: false },
    );
    const running = await waitForStatus(planId, 'RUNNING');
    const output = subscribe<any>(ws, `subscription($id: ID!) { testOutput(testId: $id) { testId stream data } }`, { id: running.id });
    // its environment is BUSY with it, and reports its live resource use once the script runs (a
    // sample taken as the sandbox starts may find nothing charged to its group yet)
    let busy: any = null;
    for (let i = 0; i < 60 && !(busy?.utilization?.memoryBytes > 0); i++) {
      const envs = (await gqlOk(url, `{ environments(status: BUSY) { id status currentTest { id } utilization { cpuTimeMs memoryBytes peakMemoryBytes } } }`)).environments;
      busy = envs.find((e: any) => e.currentTest?.id === running.id) ?? null;
      if (!(busy?.utilization?.memoryBytes > 0)) await sleep(100);
    }
    assert.ok(busy?.utilization, 'a busy environment reports its utilization');
    assert.ok(busy.utilization.memoryBytes > 0, JSON.stringify(busy.utilization));
    const idle = (await gqlOk(url, `{ environments(status: READY) { utilization { memoryBytes } } }`)).environments;
    assert.ok(idle.every((e: any) => e.utilization === null), 'idle environments report none');
    const t0 = Date.now();
    const res = (await gqlOk(url, `mutation($id: ID!) { cancelTest(id: $id) { status } }`, { id: running.id })).cancelTest;
    assert.equal(res.status, 'CANCELLED');
    for (let i = 0; i < 100 && hostProcesses(marker).length; i++) await sleep(50);
    assert.deepEqual(hostProcesses(marker), [], 'killed');
    assert.ok(Date.now() - t0 < 5_000);
    const plan = await waitPlan(planId);
    assert.equal(plan.status, 'FAILED', 'all finished, one not passed'); // cancelTest alone does not cancel the plan
    assert.equal(plan.tests.nodes[0].status, 'CANCELLED');
    output.close();
    // Reset: the cancelled test's environment is READY again (not retired), within a generous while.
    let envs: any[] = [];
    for (let i = 0; i < 200; i++) {
      envs = (await gqlOk(url, `{ environments(pool: "solo") { id status } }`)).environments;
      if (envs.some((e: any) => e.id === busy.id && e.status === 'READY')) break;
      await sleep(100);
    }
    assert.deepEqual(envs.filter((e: any) => e.id === busy.id).map((e: any) => e.status), ['READY'], `the environment is reset: ${JSON.stringify(envs)}`);
    // The next test in that environment finds in /work only its own script: nothing the cancelled one wrote is left.
    const next = await runPlan([{ name: 'after-cancel', type: 'UNIT', requirements: { tags: ['solo'] }, script: 'ls -A /work; echo end' }]);
    const after = next.tests.nodes[0];
    assert.equal(after.environment.id, busy.id, 'the same environment');
    assert.equal(after.result.stdout, '.test-script\nend\n', `/work holds only the running script after the reset: ${JSON.stringify(after.result)}`);
  });

  it('streams live output and pushes each status change with the result', async () => {
    const planId = await runPlan([{ name: 'talks', type: 'UNIT', script: 'for i in 1 2 3; do echo line $i; sleep 0.3; done' }], { wait: false });
    const updates = subscribe<any>(ws, `subscription($p: ID) { testUpdated(planId: $p) { id status attempts result { exitCode stdout } } }`, { p: planId });
    const running = await waitForStatus(planId, 'RUNNING');
    const out = subscribe<any>(ws, `subscription($id: ID!) { testOutput(testId: $id) { testId stream data offset } }`, { id: running.id });
    const chunk = await out.next((c) => /line [23]/.test(c.data));
    assert.equal(chunk.testId, running.id);
    assert.equal(chunk.stream, 'stdout');
    const done = await updates.next((u) => u.status === 'PASSED', 15_000);
    assert.equal(done.result.exitCode, 0);
    assert.equal(done.result.stdout, 'line 1\nline 2\nline 3\n');
    out.close();
    updates.close();
    const status = (await gqlOk(url, `{ systemStatus { workers healthy components { name healthy } pools { name capacity ready busy } } }`)).systemStatus;
    assert.equal(status.workers, 1);
    assert.equal(status.healthy, true, JSON.stringify(status));
    assert.deepEqual(status.pools.map((p: any) => [p.name, p.capacity]), [['container', 2], ['solo', 1]]);
  });

  it('submit --wait follows a plan from the command line, writes JUnit XML and exits non-zero on failure', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'orch-cli-'));
    try {
      const plan = join(dir, 'plan.json');
      writeFileSync(plan, JSON.stringify({ name: 'from-ci', tests: [
        { name: 'good', type: 'UNIT', script: 'echo fine' },
        { name: 'bad & <broken>', type: 'UNIT', script: 'echo "expected 2, got 3" >&2; exit 1' },
      ] }));
      const main = join(__dirname, '../../src/main.js');
      const run = (file: string) =>
        new Promise<{ code: number | null; out: string }>((resolve) => {
          execFile(process.execPath, [main, 'submit', file, '--url', url, '--wait', '--junit', join(dir, 'junit.xml')], (err, stdout, stderr) =>
            resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
          );
        });
      const failed = await run(plan);
      assert.equal(failed.code, 1, failed.out);
      assert.match(failed.out, /FAILED\s+bad & <broken> \(\d+ ms\): exit code 1: expected 2, got 3/);
      assert.match(failed.out, /plan FAILED: 1 passed, 1 failed/);
      const xml = readFileSync(join(dir, 'junit.xml'), 'utf8');
      assert.match(xml, /<testsuite name="from-ci" tests="2" failures="1" errors="0"/);
      assert.match(xml, /name="bad &amp; &lt;broken&gt;"[^]*<failure message="exit code 1: expected 2, got 3"/);

      writeFileSync(plan, JSON.stringify({ name: 'green', tests: [{ name: 'good', type: 'UNIT', script: 'true' }] }));
      assert.equal((await run(plan)).code, 0);
      writeFileSync(plan, JSON.stringify({ name: 'bad', tests: [{ name: 'x', type: 'UNIT', script: '' }] }));
      // refused by the CLI itself with the server's rule, before anything is sent: exit 2, one line
      const rejected = await run(plan);
      assert.equal(rejected.code, 2);
      assert.equal(rejected.out, `${plan}:1: tests[0].script: must not be empty\n`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
