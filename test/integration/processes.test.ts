// The orchestrator as users run it: real `node dist/src/main.js` processes, their environment, their
// exit codes and what they leave behind.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Client } from 'graphql-ws';
import { isProcessAlive, waitForPidExit } from '../../src/infra/process-utils';
import { gqlOk, sleep, subscribe, wsClient } from '../helpers/gql';
import {
  embeddedRedisPid,
  processesMentioning,
  runOrchestrator,
  startOrchestrator,
  stopAllOrchestrators,
} from '../helpers/orchestrator-process';
import { startTestPostgres } from '../helpers/postgres';
import { startTestRedis } from '../helpers/redis';
import { freshPgliteDir } from '../helpers/server';

const SUBMIT = `mutation($input: SubmitPlanInput!) { submitPlan(input: $input) { id name counts { queued total } } }`;
const PLAN = `query($id: ID!) { plan(id: $id) { id name counts { total } tests { totalCount nodes { id name status } } } }`;
const STATUS = `{ systemStatus { queuedTests counts { total queued cancelled } components { name healthy } } }`;
const unit = (name: string) => ({ name, type: 'UNIT', script: 'true' });

describe('orchestrator processes', () => {
  const cleanups: (() => unknown)[] = [];
  after(async () => {
    await stopAllOrchestrators();
    for (const c of cleanups.reverse()) await c();
  });
  const tempDir = (prefix: string) => {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    return dir;
  };

  it('fans out events across two serve processes that share PostgreSQL and Redis', async () => {
    const [pg, redis] = await Promise.all([startTestPostgres(), startTestRedis()]);
    cleanups.push(() => pg.stop(), () => redis.stop());
    const env = { DATABASE_URL: await pg.createDatabase(), REDIS_URL: redis.url, REDIS_PREFIX: `p${randomUUID().slice(0, 8)}` };
    const [a, b] = await Promise.all([
      startOrchestrator('serve', { env, dataDir: tempDir('orch-a-') }),
      startOrchestrator('serve', { env, dataDir: tempDir('orch-b-') }),
    ]);
    const ws: Client = wsClient(b.url);
    cleanups.push(() => ws.dispose());

    const status = subscribe<any>(ws, `subscription { systemStatusUpdated { queuedTests counts { total queued cancelled } } }`);
    const initial = await status.next(); // the current state comes at once: the subscription is live
    const plans = subscribe<any>(ws, `subscription { planUpdated { id name status counts { queued cancelled total } } }`);
    await sleep(300);

    const { submitPlan } = await gqlOk(a.url, SUBMIT, { input: { name: 'across', tests: [unit('one'), unit('two')] } });
    const created = await plans.next((p) => p.id === submitPlan.id);
    assert.deepEqual(created.counts, { queued: 2, cancelled: 0, total: 2 });
    assert.equal(created.name, 'across');

    const onB = (await gqlOk(b.url, PLAN, { id: submitPlan.id })).plan;
    assert.equal(onB?.id, submitPlan.id, 'B reads the plan A stored');
    assert.deepEqual(onB.tests.nodes.map((t: any) => [t.name, t.status]), [['one', 'QUEUED'], ['two', 'QUEUED']]);

    const tests = subscribe<any>(ws, `subscription($p: ID) { testUpdated(planId: $p) { id planId name status finishedAt } }`, { p: submitPlan.id });
    await sleep(300);
    const target = onB.tests.nodes[0];
    await gqlOk(a.url, `mutation($id: ID!) { cancelTest(id: $id) { id status } }`, { id: target.id });

    const t = await tests.next((x) => x.id === target.id);
    assert.equal(t.status, 'CANCELLED');
    assert.equal(t.planId, submitPlan.id);
    assert.ok(t.finishedAt);
    const p = await plans.next((x) => x.id === submitPlan.id && x.counts.cancelled === 1);
    assert.deepEqual(p.counts, { queued: 1, cancelled: 1, total: 2 });
    const s = await status.next((x) => x.counts.total === initial.counts.total + 2 && x.counts.cancelled === initial.counts.cancelled + 1);
    assert.equal(s.counts.queued, initial.counts.queued + 1);
    for (const sub of [status, plans, tests]) sub.close();

    const [ea, eb] = await Promise.all([a.stop(), b.stop()]);
    assert.deepEqual([ea.code, eb.code], [0, 0], `exit codes; A:\n${a.log(20)}\nB:\n${b.log(20)}`);
    assert.deepEqual([...ea.leftBehind, ...eb.leftBehind], []);
  });

  it('starts on embedded defaults, refuses a second process on its DATA_DIR, and leaves nothing behind on SIGTERM', async () => {
    const dataDir = tempDir('orch-embedded-');
    const first = await startOrchestrator('start', { dataDir });
    const s = (await gqlOk(first.url, STATUS)).systemStatus;
    assert.equal(typeof s.counts.total, 'number');
    assert.ok(s.components.find((c: any) => c.name === 'database')?.healthy, JSON.stringify(s.components));
    const redisPid = embeddedRedisPid(dataDir, first.pid);
    assert.ok(redisPid && isProcessAlive(redisPid), `embedded redis-server running; log:\n${first.log(20)}`);
    assert.ok(existsSync(join(dataDir, 'pglite.lock')), 'the embedded database is locked');

    const second = await runOrchestrator('start', { dataDir }, 30_000);
    assert.ok(!second.killed, `the second start should exit by itself; its log:\n${second.proc.log()}`);
    assert.deepEqual(second.leftBehind, []);
    assert.notEqual(second.code, 0);
    assert.ok(second.ms < 15_000, `refused within ${second.ms} ms`);
    // checked last, so that a wrong message does not hide what the shutdown below shows
    const refusal = () => {
      assert.match(second.stderr, /embedded database/i, second.stderr);
      assert.match(second.stderr, new RegExp(`in use by another process \\(pid ${first.pid}\\b`), second.stderr);
    };
    assert.ok(!first.hasExited());
    assert.equal((await fetch(`${first.url}/readyz`)).status, 200, 'the first is unaffected');
    assert.ok(isProcessAlive(redisPid), 'the first process keeps its redis-server');
    await gqlOk(first.url, STATUS);

    const exit = await first.stop('SIGTERM', 25_000);
    assert.equal(exit.killed, false, `stopped within 25 s; log:\n${first.log(30)}`);
    assert.deepEqual([exit.code, exit.signal], [0, null], `clean exit; log:\n${first.log(30)}`);
    assert.ok(exit.ms < 20_000, `exit took ${exit.ms} ms`);
    assert.deepEqual(exit.leftBehind, [], 'its redis-server ended with it');
    assert.ok(await waitForPidExit(redisPid, 2_000), `redis-server ${redisPid} is gone`);
    assert.deepEqual(processesMentioning(dataDir), [], 'no process mentions the DATA_DIR');
    assert.equal(existsSync(join(dataDir, 'pglite.lock')), false, 'pglite.lock released');
    assert.equal(existsSync(join(dataDir, 'redis.pid')), false, 'redis.pid removed');

    const third = await startOrchestrator('start', { dataDir });
    await gqlOk(third.url, STATUS);
    const thirdExit = await third.stop();
    assert.equal(thirdExit.code, 0, third.log(30));
    assert.deepEqual(thirdExit.leftBehind, []);
    assert.deepEqual(processesMentioning(dataDir), []);
    refusal();
  });

  it('keeps plans and tests across a restart on the same DATA_DIR', async () => {
    const dataDir = await freshPgliteDir(); // migrated copy: no initdb here
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const first = await startOrchestrator('start', { dataDir });
    const { submitPlan } = await gqlOk(first.url, SUBMIT, { input: { name: 'durable', tests: [unit('a'), unit('b'), unit('c')] } });
    const before = (await gqlOk(first.url, PLAN, { id: submitPlan.id })).plan;
    const firstExit = await first.stop();
    assert.equal(firstExit.killed, false, first.log(30));

    const again = await startOrchestrator('start', { dataDir });
    const plan = (await gqlOk(again.url, PLAN, { id: submitPlan.id })).plan;
    assert.equal(plan?.name, 'durable');
    assert.equal(plan.tests.totalCount, 3);
    assert.deepEqual(
      plan.tests.nodes.map((t: any) => [t.id, t.name]),
      before.tests.nodes.map((t: any) => [t.id, t.name]),
    );
    const againExit = await again.stop();
    assert.deepEqual([firstExit.code, againExit.code], [0, 0], `exit codes; first:\n${first.log(5)}\nagain:\n${again.log(5)}`);
    assert.deepEqual([...firstExit.leftBehind, ...againExit.leftBehind], [], 'no redis-server left behind');
  });

  it('lists every configuration problem at once and exits 1 before opening anything', async () => {
    const dataDir = join(tempDir('orch-badcfg-'), 'never-created');
    const r = await runOrchestrator('start', {
      dataDir,
      env: { PORT: 'abc', POOLS: JSON.stringify([{ name: 'BAD NAME', kind: 'X' }]) },
    }, 15_000);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /invalid configuration/);
    const problems = r.stderr.split('\n').filter((l) => l.trimStart().startsWith('- '));
    const mentions = (re: RegExp) => assert.ok(problems.some((l) => re.test(l)), `${re} among:\n${r.stderr}`);
    mentions(/^\s*- PORT\b/);
    mentions(/POOLS pools\.0\.name|POOLS.*\bname\b/);
    mentions(/POOLS pools\.0\.kind|POOLS.*\bkind\b/);
    for (const field of ['cpus', 'memoryMb', 'image', 'capacity', 'testTypes']) mentions(new RegExp(`POOLS.*\\b${field}\\b`));
    assert.ok(r.ms < 10_000, `${r.ms} ms`);
    assert.equal(existsSync(dataDir), false, 'DATA_DIR not created: nothing was opened');
  });

  it('names the Debian package when redis-server is missing and no REDIS_URL is set', async () => {
    const bin = tempDir('orch-path-');
    symlinkSync(process.execPath, join(bin, 'node'));
    const dataDir = join(tempDir('orch-noredis-'), 'data');
    mkdirSync(dataDir);
    const r = await runOrchestrator('start', { dataDir, env: { PATH: bin } }, 45_000);
    assert.ok(!r.killed, r.proc.log());
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /redis-server/);
    assert.match(r.stderr, /package "?redis-server"?|apt-get install[^\n]*redis-server/, r.stderr);
    assert.equal(existsSync(join(dataDir, 'pglite.lock')), false, 'nothing stays locked');
    assert.deepEqual(processesMentioning(dataDir), []);
  });

  it('runs kind: QEMU on its defaults, in a VM booted beside the containers; a stop while the VM boots does not wait for it', async (t) => {
    if (!existsSync('/usr/bin/qemu-system-x86_64')) return t.skip('qemu-system-x86 is not installed (scripts/debian-packages.txt)');
    const dataDir = tempDir('orch-vm-');
    const env = {};
    // the QEMU processes below an orchestrator process (its driver host's children)
    const parentOf = (pid: number) => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[1]);
    const below = (root: number, pid: number) => {
      for (let p = pid, i = 0; p > 1 && i < 64; i++) {
        if (p === root) return true;
        try {
          p = parentOf(p);
        } catch {
          return false;
        }
      }
      return false;
    };
    const qemuOf = (root: number) => processesMentioning('qemu-system').filter((p) => below(root, p.pid)).map((p) => p.pid);
    const alive = (pids: number[]) => pids.filter((pid) => isProcessAlive(pid));
    const until = async (what: string, ok: () => boolean, ms: number) => {
      const deadline = Date.now() + ms;
      while (!ok()) {
        if (Date.now() > deadline) throw new Error(`${what} within ${ms} ms`);
        await sleep(100);
      }
    };

    // stopped while its VM boots: it ends the boot, not waits for it
    const booting = await startOrchestrator('start', { dataDir, env });
    let seen: number[] = [];
    await until(`a QEMU process started; log:\n${booting.log(20)}`, () => (seen = qemuOf(booting.pid)).length > 0, 60_000);
    const early = await booting.stop('SIGTERM', 25_000);
    assert.deepEqual([early.code, early.signal, early.killed], [0, null, false], booting.log(30));
    assert.ok(early.ms < 3_000, `stopped ${early.ms} ms after SIGTERM while its VM booted; log:\n${booting.log(30)}`);
    assert.deepEqual(alive(seen), [], 'no QEMU left behind');

    const proc = await startOrchestrator('start', { dataDir, env });
    const vm = { name: 'vm', type: 'UNIT', requirements: { kind: 'QEMU' }, script: 'uname -r' };
    const PLAN_RESULTS = `query($id: ID!) { plan(id: $id) { status tests { nodes { name status environment { pool kind } result { stdout errorMessage } } } } }`;
    const vms = new Set<number>();
    const finished = async (input: object) => {
      const { submitPlan } = await gqlOk(proc.url, SUBMIT, { input });
      const deadline = Date.now() + 240_000;
      for (;;) {
        for (const pid of qemuOf(proc.pid)) vms.add(pid);
        const plan = (await gqlOk(proc.url, PLAN_RESULTS, { id: submitPlan.id })).plan;
        if (plan.tests.nodes.every((x: any) => !['QUEUED', 'RUNNING'].includes(x.status))) return Object.fromEntries(plan.tests.nodes.map((x: any) => [x.name, x]));
        assert.ok(Date.now() < deadline, `plan not finished: ${JSON.stringify(plan)}\n${proc.log(30)}`);
        await sleep(500);
      }
    };
    const byName = await finished({ name: 'defaults', tests: [vm, { name: 'box', type: 'UNIT', script: 'uname -r' }] });
    assert.deepEqual([byName.vm.status, byName.vm.environment?.pool, byName.vm.environment?.kind], ['PASSED', 'qemu', 'QEMU'], JSON.stringify(byName.vm));
    assert.deepEqual([byName.box.status, byName.box.environment?.kind], ['PASSED', 'CONTAINER'], JSON.stringify(byName.box));
    const hostKernel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
    assert.equal(byName.box.result.stdout.trim(), hostKernel, 'a container runs on the host kernel');
    assert.match(byName.vm.result.stdout, /^\d+\.\d+/, 'a kernel release');
    assert.notEqual(byName.vm.result.stdout.trim(), hostKernel, 'the VM runs its own kernel');

    // a bundle, unpacked by the orchestrator under its umask (077), is read by QEMU (the sandbox user)
    const project = tempDir('orch-vm-bundle-');
    mkdirSync(join(project, 'data'));
    writeFileSync(join(project, 'run.sh'), '#!/bin/sh\necho "sum $(( $(cat data/a) + $(cat data/b) ))"\n', { mode: 0o755 });
    writeFileSync(join(project, 'data/a'), '40\n');
    writeFileSync(join(project, 'data/b'), '2\n');
    const res = await fetch(`${proc.url}/bundles`, { method: 'POST', headers: { 'content-type': 'application/gzip' }, body: execFileSync('tar', ['-C', project, '-czf', '-', '.']) });
    const bundle = (await res.json()) as { id: string };
    assert.equal(res.status, 201, JSON.stringify(bundle));
    const bundled = (await finished({ name: 'bundled', bundle: bundle.id, tests: [{ name: 'project', type: 'UNIT', requirements: { kind: 'QEMU' }, script: './run.sh' }] })).project;
    assert.deepEqual([bundled.status, bundled.environment?.kind, bundled.result.stdout], ['PASSED', 'QEMU', 'sum 42\n'], JSON.stringify(bundled));
    assert.ok(vms.size >= 2, `the VM and its spare were seen: ${[...vms]}`);
    const exit = await proc.stop('SIGTERM', 25_000);
    assert.deepEqual([exit.code, exit.killed], [0, false], proc.log(30));
    assert.ok(vms.size > 0, 'its VMs were seen');
    assert.deepEqual(alive([...vms]), [], 'no QEMU left behind');
  });
});
