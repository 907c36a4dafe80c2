// Dedicated CPUs across processes: two container drivers in two driver host processes (as two workers
// on one host would have) never give one CPU to two performance runs at once, a run that is going when
// a performance run starts is moved off its CPUs, and the reservation of a process that was killed is
// taken over. Real sandboxes, real cgroups (v1 here), the host-wide default lock directory.

import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { formatCpuList, parseCpuList } from '../../src/environments/cgroups/cpu-list.js';
import { defaultCpuLockDir } from '../../src/environments/container/dedicated-cpus.js';
import type { EnvironmentHandle, EnvironmentShape, RunOutcome, RunSpec } from '../../src/environments/driver.js';
import { RemoteDriver } from '../../src/environments/remote/remote.driver.js';
import { parseLockHolder } from '../../src/infra/pid-lock.js';
import { processLife, sleep } from '../../src/infra/process-utils.js';
import { TEST_IMAGE, makeTempDir, silentLogger, testImageDir, type TempDir } from '../helpers/sandbox-env.js';

const shape: EnvironmentShape = { pool: 'cpus', kind: 'CONTAINER', arch: 'x86_64', cpus: 1, memoryMb: 128, image: TEST_IMAGE, pids: 64 };
const BASE_CPUS = '/sys/fs/cgroup/cpuset/test-orchestrator/cpuset.cpus';

/** A script that prints `<ns since epoch> <its Cpus_allowed_list>` every 50 ms for `seconds`. */
const sampler = (seconds: number) =>
  `end=$(( $(date +%s%N) / 1000000 + ${Math.round(seconds * 1000)} )); while [ $(( $(date +%s%N) / 1000000 )) -lt "$end" ]; do echo "$(date +%s%N) $(grep Cpus_allowed_list /proc/self/status | cut -f2)"; sleep 0.05; done`;

interface Sample {
  at: bigint;
  cpus: number[];
}
const samples = (o: RunOutcome): Sample[] =>
  o.stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [at, list] = l.split(' ');
      return { at: BigInt(at), cpus: parseCpuList(list) };
    });
const show = (v: unknown) => JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? String(x) : x));
const window = (s: Sample[]) => ({ from: s[0].at, to: s[s.length - 1].at, cpus: s[0].cpus });

describe('dedicated CPUs across driver processes', () => {
  let skip: string | null = null;
  let tmp: TempDir;
  let allowed: number[] = [];
  const drivers: RemoteDriver[] = [];
  const envs = new Map<RemoteDriver, EnvironmentHandle[]>();
  let seq = 0;

  const spec = (over: Partial<RunSpec> & { script: string }): RunSpec => ({
    testId: `cpus-${++seq}`,
    attempt: 1,
    env: {},
    timeoutMs: 30_000,
    services: [],
    artifactPaths: [],
    artifactDir: path.join(tmp.path, `art-${seq}`),
    maxOutputBytes: 1024 * 1024,
    ...over,
  });

  async function newDriver(n: number): Promise<{ driver: RemoteDriver; envs: EnvironmentHandle[] }> {
    const driver = new RemoteDriver('CONTAINER', { imageDir: testImageDir() }, silentLogger);
    drivers.push(driver);
    await driver.preflight(shape);
    const handles: EnvironmentHandle[] = [];
    for (let i = 0; i < n; i++) handles.push(await driver.provision(`cpus-${process.pid}-${drivers.length}-${i}`, shape));
    envs.set(driver, handles);
    return { driver, envs: handles };
  }

  before(() => {
    tmp = makeTempDir('orch-cpus-');
    if (!existsSync(path.join(testImageDir(), TEST_IMAGE, 'rootfs'))) skip = `image ${TEST_IMAGE} missing (the container suite builds it)`;
    else if (!existsSync(BASE_CPUS)) skip = 'no cgroup v1 cpuset hierarchy';
    else {
      allowed = parseCpuList(readFileSync(BASE_CPUS, 'utf8'));
      if (allowed.length < 2) skip = 'one CPU: nothing to dedicate';
    }
  });
  after(async () => {
    for (const d of drivers) {
      for (const e of envs.get(d) ?? []) await d.destroy(e).catch(() => undefined);
      await d.close();
    }
    tmp?.cleanup();
  });

  it('never gives a CPU to two performance runs at once, and moves a running test off it', { timeout: 60_000 }, async (t) => {
    if (skip) return t.skip(skip);
    const a = await newDriver(1);
    const b = await newDriver(2);
    // a unit test already running when the performance runs start
    const unit = b.driver.run(b.envs[1], spec({ script: sampler(7) }));
    await sleep(700);
    const perf = await Promise.all([
      a.driver.run(a.envs[0], spec({ dedicatedCpus: 1, script: sampler(1.5) })),
      b.driver.run(b.envs[0], spec({ dedicatedCpus: 1, script: sampler(1.5) })),
    ]);
    const u = await unit;
    for (const o of [...perf, u]) assert.equal(o.exitCode, 0, o.stderr);

    const windows = perf.map((o) => samples(o)).map((s) => {
      assert.ok(s.every((x) => formatCpuList(x.cpus) === formatCpuList(s[0].cpus)), `a performance run keeps its CPUs: ${show(s)}`);
      return window(s);
    });
    for (const w of windows) {
      assert.equal(w.cpus.length, 1);
      assert.notEqual(w.cpus[0], allowed[0], 'the lowest CPU is never dedicated');
    }
    const [w1, w2] = windows;
    const overlap = w1.from <= w2.to && w2.from <= w1.to;
    if (overlap) assert.equal(w1.cpus.filter((c) => w2.cpus.includes(c)).length, 0, `overlapping performance runs share no CPU: ${show(windows)}`);
    if (allowed.length === 2) assert.equal(overlap, false, 'with one CPU to dedicate, the second performance run waited for the first');

    const unitSamples = samples(u);
    const during = unitSamples.filter((s) => windows.some((w) => s.at >= w.from && s.at <= w.to));
    assert.ok(during.length > 0, 'the unit test ran while performance runs did');
    for (const s of during) {
      const busy = windows.filter((w) => s.at >= w.from && s.at <= w.to).flatMap((w) => w.cpus);
      assert.equal(s.cpus.filter((c) => busy.includes(c)).length, 0, `the unit test is off the dedicated CPUs ${busy} at ${s.at}: it had ${s.cpus}`);
    }
    assert.equal(formatCpuList(unitSamples[0].cpus), formatCpuList(allowed), 'before them, it had every CPU');
    assert.equal(formatCpuList(unitSamples[unitSamples.length - 1].cpus), formatCpuList(allowed), 'after them, it had them back');
  });

  it('takes over the reservation of a process that was killed', { timeout: 60_000 }, async (t) => {
    if (skip) return t.skip(skip);
    const a = await newDriver(1);
    const b = await newDriver(1);
    let started!: () => void;
    const isStarted = new Promise<void>((r) => (started = r));
    const held = a.driver.run(a.envs[0], spec({ dedicatedCpus: 1, script: 'echo up; exec sleep 60', onOutput: () => started() }));
    await isStarted;
    const lockDir = defaultCpuLockDir();
    const locks = readdirSync(lockDir).filter((n) => /^cpu-\d+\.lock$/.test(n));
    const holders = locks.map((n) => parseLockHolder(readFileSync(path.join(lockDir, n), 'utf8'))!).filter((h) => h.tag?.startsWith(a.envs[0].id.replace(/[^A-Za-z0-9_-]/g, '_')));
    assert.equal(holders.length, 1, `one CPU held by the run: ${JSON.stringify(holders)}`);
    // a performance run waiting for that CPU (the only one this host can dedicate) can be aborted:
    // it never started, and holds nothing
    if (allowed.length === 2) {
      const stop = new AbortController();
      const waiting = b.driver.run(b.envs[0], spec({ dedicatedCpus: 1, script: 'echo ran', signal: stop.signal }));
      await sleep(300);
      stop.abort();
      const gaveUp = await waiting;
      assert.equal(gaveUp.aborted, true);
      assert.equal(gaveUp.stdout, '', 'its script never ran');
      const heldNow = readdirSync(lockDir).filter((n) => /^cpu-\d+\.lock$/.test(n)).map((n) => parseLockHolder(readFileSync(path.join(lockDir, n), 'utf8'))?.tag);
      assert.ok(!heldNow.some((tag) => tag?.startsWith(b.envs[0].id)), `the aborted run holds no CPU: ${heldNow}`);
      await b.driver.reset(b.envs[0]);
    }
    process.kill(holders[0].pid, 'SIGKILL'); // the driver host process of `a`, with its sandbox
    await assert.rejects(held, /sandbox driver process ended/);
    for (let i = 0; i < 100 && processLife(holders[0].pid) !== 'gone'; i++) await sleep(20);
    const o = await b.driver.run(b.envs[0], spec({ dedicatedCpus: 1, timeoutMs: 10_000, script: 'grep Cpus_allowed_list /proc/self/status | cut -f2' }));
    assert.equal(o.exitCode, 0, o.stderr);
    assert.equal(o.stdout.trim(), String(allowed[allowed.length - 1]), 'the dead process held it: the next run has it');
    const plain = await b.driver.run(b.envs[0], spec({ script: 'grep Cpus_allowed_list /proc/self/status | cut -f2' }));
    assert.equal(plain.stdout.trim(), formatCpuList(allowed), 'and gave it back to other runs');
  });
});
