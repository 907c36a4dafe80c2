// Runs the shared conformance suite against the ContainerDriver (bubblewrap + cgroups), plus
// container-specific checks (cgroup cleanup, hardening, infrastructure errors).

import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { detectCgroupLayout, prepareCgroupParent, type CgroupLayout } from '../../src/environments/cgroups/layout.js';
import { formatCpuList, parseCpuList } from '../../src/environments/cgroups/cpu-list.js';
import { RunCgroup } from '../../src/environments/cgroups/run-cgroup.js';
import { listChildGroups, removeGroupTree } from '../../src/environments/cgroups/sweep.js';
import { ContainerDriver, type ContainerHandle } from '../../src/environments/container/driver.js';
import { checkImage, ensureImage } from '../../src/environments/container/image.js';
import { InfrastructureError, type EnvironmentShape, type RunSpec } from '../../src/environments/driver.js';
import {
  TEST_IMAGE,
  containerConformanceHooks,
  hostProcessesMatching,
  makeTempDir,
  silentLogger,
  stderrLogger,
  testImageDir,
  uniqueSleepArg,
  type TempDir,
} from '../helpers/sandbox-env.js';
import { runDriverConformance, type DriverUnderTest } from './driver-conformance.js';

const shape: EnvironmentShape = {
  pool: 'conformance',
  kind: 'CONTAINER',
  arch: 'x86_64',
  cpus: 1,
  memoryMb: 128,
  image: TEST_IMAGE,
  pids: 64,
};

let imageProblem: Promise<string | null> | null = null;
/** Builds the image when missing (logged); returns why the tests must be skipped, or null. */
function imageReady(): Promise<string | null> {
  imageProblem ??= (async () => {
    const state = await checkImage(testImageDir(), TEST_IMAGE);
    if (state.ok) return null;
    try {
      await ensureImage(testImageDir(), TEST_IMAGE, stderrLogger);
      return null;
    } catch (err) {
      return `image ${TEST_IMAGE} missing in ${testImageDir()} and it cannot be built here: ${(err as Error).message}`;
    }
  })();
  return imageProblem;
}

const stateDirs: TempDir[] = [];
function newDriver(extra: Partial<ConstructorParameters<typeof ContainerDriver>[0]> = {}): ContainerDriver {
  // 0711: when the tests run as root, the sandbox user must reach the work dirs below it.
  const state = makeTempDir('orch-container-state-', { traversable: true });
  stateDirs.push(state);
  return new ContainerDriver({ imageDir: testImageDir(), logger: silentLogger, stateDir: state.path, ...extra });
}
after(() => stateDirs.forEach((d) => d.cleanup()));

runDriverConformance(
  'Container',
  async (): Promise<DriverUnderTest> => {
    const problem = await imageReady();
    return problem ? { skip: problem } : newDriver();
  },
  shape,
  containerConformanceHooks,
);

describe('ContainerDriver specifics', () => {
  let driver: ContainerDriver;
  let env: ContainerHandle;
  let tmp: TempDir;
  let skip: string | null = null;

  before(async () => {
    skip = await imageReady();
    tmp = makeTempDir('orch-container-specific-');
    if (skip) return;
    driver = newDriver();
    await driver.preflight(shape);
    env = await driver.provision(`specific-${process.pid}`, shape);
  });
  after(async () => {
    if (driver && env) await driver.destroy(env);
    await driver?.close();
    tmp.cleanup();
  });

  const spec = (over: Partial<RunSpec> & { script: string }): RunSpec => ({
    testId: 'specific',
    attempt: 1,
    env: {},
    timeoutMs: 10_000,
    services: [],
    artifactPaths: [],
    artifactDir: path.join(tmp.path, 'art'),
    maxOutputBytes: 65536,
    ...over,
  });

  function runGroups(): string[] {
    // Run groups are below the driver instance's own parent group.
    const dirs = ['/sys/fs/cgroup', '/sys/fs/cgroup/pids', '/sys/fs/cgroup/unified'].map((r) => path.join(r, 'test-orchestrator', driver.instance));
    return dirs.filter(existsSync).flatMap((d) => readdirSync(d).filter((n) => n.startsWith(`specific-${process.pid}-`)));
  }

  it('runs as uid 65534 without capabilities, no_new_privs, in its own namespaces, and removes its cgroup', async (t) => {
    if (skip) return t.skip(skip);
    const o = await driver.run(env, spec({ script: 'id -u; grep -E "^(CapEff|NoNewPrivs)" /proc/self/status; hostname; cat /proc/1/cmdline | tr "\\0" " "' }));
    assert.equal(o.exitCode, 0, o.stderr);
    assert.match(o.stdout, /^65534$/m);
    assert.match(o.stdout, /CapEff:\s+0000000000000000/);
    assert.match(o.stdout, /NoNewPrivs:\s+1/);
    // pid 1 is the sandbox's own: the runner (which reaps orphans), not the host's init
    assert.match(o.stdout, /^\/run\/orchestrator-runner \/run\/orchestrator\/status 4 \/bin\/sh \/work\/.test-script $/m);
    assert.deepEqual(runGroups(), []);
  });

  it('reaps the processes orphaned while the script runs (its pid 1 is the runner): they never fill the pids limit', async (t) => {
    if (skip) return t.skip(skip);
    // each `sh -c 'true &'` leaves an orphan that ends at once: a zombie of pid 1 unless pid 1 reaps it
    const script = `i=0; while [ $i -lt ${shape.pids * 3} ]; do sh -c 'true &' || exit 9; i=$((i + 1)); done; echo orphans=$i; exit 3`;
    const o = await driver.run(env, spec({ script }));
    assert.equal(o.exitCode, 3, o.stderr);
    assert.match(o.stdout, new RegExp(`orphans=${shape.pids * 3}`));
    assert.equal(o.pidsLimitHit, false);
    // with a service: perl is pid 1 and runs the runner
    const withService = await driver.run(env, spec({ script, services: [{ name: 'idle', command: 'sleep 600' }] }));
    assert.equal(withService.exitCode, 3, withService.stderr);
    assert.match(withService.stdout, new RegExp(`orphans=${shape.pids * 3}`));
    assert.deepEqual(runGroups(), []);
  });

  it('with the perl runner (nativeRunner: false): the same exit codes, signals, orphans reaped, perl as pid 1', async (t) => {
    if (skip) return t.skip(skip);
    const perlDriver = newDriver({ nativeRunner: false });
    const h = await perlDriver.provision(`perl-${process.pid}`, shape);
    try {
      const pid1 = await perlDriver.run(h, spec({ script: 'tr "\\0" " " < /proc/1/cmdline' }));
      assert.match(pid1.stdout, /^\/usr\/bin\/perl -e .* \/run\/orchestrator\/status 4 \/bin\/sh /);
      const signalled = await perlDriver.run(h, spec({ script: 'kill -SEGV $$' }));
      assert.deepEqual([signalled.exitCode, signalled.signal], [null, 'SIGSEGV']);
      const exited = await perlDriver.run(h, spec({ script: 'exit 139' }));
      assert.deepEqual([exited.exitCode, exited.signal], [139, null]);
      const script = `i=0; while [ $i -lt ${shape.pids * 3} ]; do sh -c 'true &' || exit 9; i=$((i + 1)); done; echo orphans=$i`;
      const orphans = await perlDriver.run(h, spec({ script, services: [{ name: 'idle', command: 'sleep 600' }] }));
      assert.equal(orphans.exitCode, 0, orphans.stderr);
      assert.equal(typeof orphans.voluntaryContextSwitches, 'number');
    } finally {
      await perlDriver.destroy(h);
      await perlDriver.close();
    }
  });

  it('runs on the host as the unprivileged sandbox user, not root: work files and uid_map', async (t) => {
    if (skip) return t.skip(skip);
    const asRoot = process.getuid?.() === 0;
    const hostUid = asRoot ? 65534 : process.getuid!();
    const hostGid = asRoot ? 65534 : process.getgid!();
    assert.deepEqual(driver.sandboxHostIds, { uid: hostUid, gid: hostGid });
    await driver.reset(env);
    // bwrap nests two user namespaces (uid 0 in the outer one is needed to mount devpts), so
    // /proc/self/uid_map inside reads "65534 0 1" either way: 0 of the outer namespace. The host's
    // view of a sandboxed process says where it really maps: "65534 <host uid> 1" (was "65534 0 1").
    const marker = uniqueSleepArg();
    const ac = new AbortController();
    const running = driver.run(env, spec({ signal: ac.signal, script: `echo x > owned.txt; mkdir made; sleep ${marker}` }));
    let hostView: { uidMap: string; gidMap: string; status: string } | null = null;
    try {
      for (let i = 0; i < 200 && !hostView; i++) {
        await new Promise((r) => setTimeout(r, 25));
        const [pid] = hostProcessesMatching(marker).filter((p) => readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'sleep');
        if (pid === undefined) continue;
        hostView = {
          uidMap: readFileSync(`/proc/${pid}/uid_map`, 'utf8'),
          gidMap: readFileSync(`/proc/${pid}/gid_map`, 'utf8'),
          status: readFileSync(`/proc/${pid}/status`, 'utf8'),
        };
      }
    } finally {
      ac.abort();
      await running;
    }
    assert.ok(hostView, 'the sandboxed sleep was not seen on the host');
    const fields = (text: string) => text.trim().split(/\s+/).map(Number);
    assert.deepEqual(fields(hostView.uidMap), [65534, hostUid, 1]);
    assert.deepEqual(fields(hostView.gidMap), [65534, hostGid, 1]);
    assert.match(hostView.status, new RegExp(`^Uid:\\s+${hostUid}\\s+${hostUid}\\s+${hostUid}\\s+${hostUid}$`, 'm'));
    assert.match(hostView.status, new RegExp(`^Gid:\\s+${hostGid}\\s+${hostGid}\\s+${hostGid}\\s+${hostGid}$`, 'm'));
    assert.match(hostView.status, /^CapBnd:\s+0000000000000000$/m);
    if (asRoot) assert.match(hostView.status, /^Groups:\s*$/m);

    const work = path.join(env.stateDir, 'work');
    for (const f of ['owned.txt', 'made']) {
      const st = statSync(path.join(work, f));
      assert.equal(st.uid, hostUid, `${f} is owned by host uid ${st.uid}`);
      assert.equal(st.gid, hostGid, `${f} has host gid ${st.gid}`);
      if (asRoot) assert.notEqual(st.uid, 0);
    }
    const inside = await driver.run(env, spec({ script: 'id -u; cat /proc/self/uid_map' }));
    assert.match(inside.stdout, /^65534\n\s*65534\s+\d+\s+1\s*$/);
  });

  it('as root, preflight names an image or state dir the sandbox user cannot reach', async (t) => {
    if (skip) return t.skip(skip);
    if (process.getuid?.() !== 0) return t.skip('only a root driver drops privileges');
    const closed = path.join(tmp.path, 'closed'); // tmp is 0700: not reachable by uid 65534
    mkdirSync(path.join(closed, 'images'), { recursive: true });
    symlinkSync(path.join(testImageDir(), TEST_IMAGE), path.join(closed, 'images', TEST_IMAGE));
    const hiddenImage = newDriver({ imageDir: path.join(closed, 'images') });
    await assert.rejects(hiddenImage.preflight(shape), /image rootfs .* is not reachable by the sandbox user uid 65534 .*\/var\/cache\/test-orchestrator\/images/);
    const hiddenState = newDriver({ stateDir: path.join(closed, 'state') });
    await assert.rejects(hiddenState.preflight(shape), /state dir .* is not reachable by the sandbox user uid 65534 .*leave stateDir unset/);
    assert.throws(() => newDriver({ sandboxUid: 0 }), /sandboxUid must be a positive integer/);
  });

  it('usage reports live figures while running', async (t) => {
    if (skip) return t.skip(skip);
    const running = driver.run(env, spec({ script: 'i=0; while [ $i -lt 3000000 ]; do i=$((i+1)); done' , timeoutMs: 1500 }));
    await new Promise((r) => setTimeout(r, 600));
    const u = await driver.usage(env);
    await running;
    assert.ok(u, 'usage is null while running');
    assert.ok((u.memoryBytes ?? 0) > 0);
    assert.ok((u.cpuTimeMs ?? 0) > 0);
  });

  it('hardened runs get a seccomp filter and cannot create user namespaces', async (t) => {
    if (skip) return t.skip(skip);
    const o = await driver.run(
      env,
      spec({ isolation: 'hardened', script: 'grep -E "^Seccomp:" /proc/self/status; unshare -U true 2>&1 && echo UNSHARED; echo end' }),
    );
    assert.equal(o.exitCode, 0, o.stderr);
    if (process.arch === 'x64') assert.match(o.stdout, /Seccomp:\s+2/);
    assert.doesNotMatch(o.stdout, /UNSHARED/);
    // Every test gets the baseline filter (container-hardening.conformance.test.ts has the details).
    const plain = await driver.run(env, spec({ script: 'grep -E "^Seccomp:" /proc/self/status' }));
    if (process.arch === 'x64') assert.match(plain.stdout, /Seccomp:\s+2/);
  });

  it('pins a performance run to CPUs it reserved, and other runs to the rest', async (t) => {
    if (skip) return t.skip(skip);
    const allowed = parseCpuList(readFileSync('/sys/fs/cgroup/cpuset/test-orchestrator/cpuset.cpus', 'utf8'));
    if (allowed.length < 2) return t.skip('one CPU: nothing to dedicate');
    const o = await driver.run(env, spec({ dedicatedCpus: 1, script: 'grep Cpus_allowed_list /proc/self/status' }));
    assert.equal(o.exitCode, 0, o.stderr);
    // the highest CPU first: the lowest stays for every other run
    assert.match(o.stdout, new RegExp(`Cpus_allowed_list:\\s+${allowed[allowed.length - 1]}$`, 'm'));
    const plain = await driver.run(env, spec({ script: 'grep Cpus_allowed_list /proc/self/status' }));
    assert.match(plain.stdout, new RegExp(`Cpus_allowed_list:\\s+${formatCpuList(allowed)}$`, 'm'), 'given back once the performance run ended');
  });

  it('a missing image or bwrap is an InfrastructureError / clear preflight error, a failing script is not', async (t) => {
    if (skip) return t.skip(skip);
    const noBwrap = newDriver({ bwrapPath: '/nonexistent/bwrap' });
    await assert.rejects(noBwrap.preflight(shape), /bubblewrap/);
    const h = await noBwrap.provision(`nobwrap-${process.pid}`, shape);
    await assert.rejects(noBwrap.run(h, spec({ script: 'true' })), InfrastructureError);
    await noBwrap.destroy(h);
    const noImage = newDriver({ imageDir: path.join(tmp.path, 'no-images') });
    await assert.rejects(noImage.preflight(shape), /npm run images/);
    const failing = await driver.run(env, spec({ script: 'exit 1' }));
    assert.equal(failing.exitCode, 1);
  });
});

describe('ContainerDriver sweep of dead instances', () => {
  // A separate shared parent (nested below test-orchestrator), so the test sees only its own instances.
  const base = `test-orchestrator/conf-sweep-${process.pid}`;
  let layout: CgroupLayout | null = null;
  let skip: string | null = null;
  let tmp: TempDir;
  const drivers: ContainerDriver[] = [];
  const sleepers: ChildProcess[] = [];

  before(async () => {
    tmp = makeTempDir('orch-container-sweep-', { traversable: true });
    skip = await imageReady();
    if (skip) return;
    if (process.getuid?.() !== 0) skip = 'creating cgroups needs root';
    else if (!(layout = await detectCgroupLayout())) skip = 'no usable cgroup hierarchy';
  });
  after(async () => {
    for (const c of sleepers) c.kill('SIGKILL');
    for (const d of drivers) await d.close().catch(() => undefined);
    if (layout) {
      for (const name of await listChildGroups(layout, base)) await removeGroupTree(layout, `${base}/${name}`, silentLogger).catch(() => undefined);
      await removeGroupTree(layout, base, silentLogger).catch(() => undefined);
    }
    tmp.cleanup();
  });

  function sweepDriver(): ContainerDriver {
    const d = new ContainerDriver({ imageDir: testImageDir(), logger: silentLogger, stateDir: path.join(tmp.path, 'state'), cgroupParent: base });
    drivers.push(d);
    return d;
  }

  /** Directories of group `rel` that exist, in any hierarchy. */
  function groupDirs(rel: string): string[] {
    const roots = ['/sys/fs/cgroup', ...readdirSync('/sys/fs/cgroup').map((c) => path.join('/sys/fs/cgroup', c))];
    return roots.map((r) => path.join(r, rel)).filter((d) => existsSync(path.join(d, 'cgroup.procs')));
  }

  /** A pid that no process has any more (a child that exited and was reaped). */
  function deadPid(): number {
    const r = spawnSync('/bin/sh', ['-c', 'echo $$']);
    return Number(String(r.stdout).trim());
  }

  it('preflight kills and removes the cgroups and state dirs of dead instances, never those of live or foreign ones', async (t) => {
    if (skip) return t.skip(skip);
    const ns = /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))![1];
    const start = readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ')[22 - 3];
    // Dead: a pid no process has; this very pid with another start time (the pid was reused);
    // foreign: another pid namespace (cannot be judged: kept).
    const deadGone = `p${deadPid()}.12345.${ns}.0000dead`;
    const deadReused = `p${process.pid}.${Number(start) + 1}.${ns}.0001dead`;
    const foreign = `p1.1.${Number(ns) + 1}.0000f00d`;
    const stateBase = path.join(tmp.path, 'state');

    // A live sibling instance (this process) with a running sandbox: must survive the sweep.
    const live = sweepDriver();
    await live.preflight(shape);
    const liveEnv = await live.provision(`sweep-live-${process.pid}`, shape);
    const liveMarker = uniqueSleepArg();
    const ac = new AbortController();
    const liveRun = live.run(liveEnv, {
      testId: 'live', attempt: 1, script: `sleep ${liveMarker}; echo survived`, env: {}, timeoutMs: 30_000, services: [],
      artifactPaths: [], artifactDir: path.join(tmp.path, 'art'), maxOutputBytes: 4096, signal: ac.signal,
    });
    try {
      for (let i = 0; i < 200 && hostProcessesMatching(liveMarker).length === 0; i++) await new Promise((r) => setTimeout(r, 25));
      assert.ok(hostProcessesMatching(liveMarker).length > 0, 'the live sandbox is running');

      // The dead instances: a run group (with a process left in it) and a state dir each.
      const outside = path.join(tmp.path, 'outside.txt');
      writeFileSync(outside, 'keep me');
      const deadMarkers: string[] = [];
      for (const dead of [deadGone, deadReused, foreign]) {
        await prepareCgroupParent(layout!, `${base}/${dead}`);
        const group = await RunCgroup.create(layout!, `${base}/${dead}`, 'some-env-1-1', { memoryBytes: 64 << 20, cpus: 1, pids: 16 }, silentLogger);
        const marker = uniqueSleepArg();
        const sleeper = spawn('sleep', [marker], { stdio: 'ignore' });
        sleepers.push(sleeper);
        for (const f of group.procsFiles) writeFileSync(f, String(sleeper.pid));
        deadMarkers.push(marker);
        const work = path.join(stateBase, dead, 'some-env', 'work');
        mkdirSync(work, { recursive: true });
        writeFileSync(path.join(work, 'left.txt'), 'x');
        symlinkSync(outside, path.join(work, 'link-out'));
        symlinkSync(tmp.path, path.join(work, 'link-dir'));
      }

      const sweeper = sweepDriver();
      await sweeper.preflight(shape);

      for (const dead of [deadGone, deadReused]) {
        assert.deepEqual(groupDirs(`${base}/${dead}`), [], `the groups of ${dead} are removed`);
        assert.ok(!existsSync(path.join(stateBase, dead)), `the state dir of ${dead} is removed`);
      }
      for (const m of deadMarkers.slice(0, 2)) assert.deepEqual(hostProcessesMatching(m), [], 'processes left in a dead group are killed');
      assert.equal(readFileSync(outside, 'utf8'), 'keep me', 'links are not followed');

      assert.ok(groupDirs(`${base}/${foreign}/some-env-1-1`).length > 0, 'a foreign instance is kept');
      assert.ok(existsSync(path.join(stateBase, foreign, 'some-env', 'work', 'left.txt')), 'the state dir of a foreign instance is kept');
      assert.ok(hostProcessesMatching(deadMarkers[2]).length > 0, 'the process of a foreign instance is not killed');

      assert.ok(groupDirs(`${base}/${live.instance}`).length > 0, 'the live instance keeps its parent group');
      assert.ok(existsSync(liveEnv.stateDir), 'the live instance keeps its state dir');
      assert.ok(hostProcessesMatching(liveMarker).length > 0, 'the live sandbox still runs');
      assert.ok(groupDirs(`${base}/${sweeper.instance}`).length > 0, 'the sweeper has its own parent group');
    } finally {
      ac.abort();
      await liveRun.catch(() => undefined);
    }
    const outcome = await liveRun;
    assert.equal(outcome.aborted, true);
    await live.destroy(liveEnv);

    // close() removes the instance's own parent group and state dir.
    await live.close();
    assert.deepEqual(groupDirs(`${base}/${live.instance}`), []);
    assert.ok(!existsSync(path.join(stateBase, live.instance)));
    await removeGroupTree(layout!, `${base}/${foreign}`, silentLogger);
  });
});
