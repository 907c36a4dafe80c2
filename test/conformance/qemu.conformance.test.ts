// Runs the shared conformance suite against the QemuDriver (a warm VM per environment, TCG without
// /dev/kvm), plus VM-specific checks: the guest's own kernel, a base disk never written, a VM that
// dies or panics as an InfrastructureError.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { InfrastructureError, type EnvironmentHandle, type EnvironmentShape, type RunSpec } from '../../src/environments/driver.js';
import { QemuDriver, type QemuHandle } from '../../src/environments/qemu/driver.js';
import { resolveImage } from '../../src/images/store.js';
import { ensureVmImage, type VmImage } from '../../src/images/vm-image.js';
import { kvmGroup } from '../../src/environments/qemu/vm.js';

const kvmUsable = () => process.env.QEMU_ACCEL === 'kvm' && kvmGroup('kvm') !== null;
import { TEST_IMAGE, hostProcessesMatching, makeTempDir, silentLogger, stderrLogger, testImageDir, type TempDir } from '../helpers/sandbox-env.js';
import { runDriverConformance, type ConformanceHooks, type DriverUnderTest } from './driver-conformance.js';

// 192 MB: the OOM case fills the run's memory through a pipe, ~9 MB/s under TCG on a busy host
const shape: EnvironmentShape = { pool: 'conformance-qemu', kind: 'QEMU', arch: 'x86_64', cpus: 1, memoryMb: 192, image: TEST_IMAGE, pids: 64 };

let vmImage: Promise<VmImage | string> | null = null;
/** The VM image of the test image's current version, built when missing; a string: why the tests skip. */
function vmReady(): Promise<VmImage | string> {
  vmImage ??= (async () => {
    if (!existsSync('/usr/bin/qemu-system-x86_64')) return 'qemu-system-x86 is not installed';
    const v = await resolveImage(testImageDir(), TEST_IMAGE);
    if (!v) return `image ${TEST_IMAGE} is not built in ${testImageDir()} (npm run images)`;
    return ensureVmImage(testImageDir(), v.rootfs, stderrLogger);
  })();
  return vmImage;
}

const stateDirs: TempDir[] = [];
/**
 * warmReset: the suite resets warm VMs (a spare's boot per case otherwise: seconds under TCG); the
 * default's reset (the spare VM swapped in) has its own cases below.
 */
function newDriver(warmReset = true, spareVms = true): QemuDriver {
  const state = makeTempDir('orch-qemu-state-', { traversable: true });
  stateDirs.push(state);
  return new QemuDriver({ imageDir: testImageDir(), logger: silentLogger, stateDir: state.path, warmReset, spareVms });
}
const sleepMs = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Alive and not a zombie. */
function isAlive(pid: number): boolean {
  try {
    return !/^\S+ \(.*\) [ZX]/s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}
/** The spare's pid once it has booted. */
async function bootedSpare(d: QemuDriver, e: EnvironmentHandle): Promise<number> {
  for (let i = 0; i < 1200; i++) {
    const pid = d.sparePid(e);
    if (pid) return pid;
    await sleepMs(100);
  }
  throw new Error('the spare VM did not boot within 120 s');
}
after(() => stateDirs.forEach((d) => d.cleanup()));

let suiteDriver: QemuDriver | null = null;
/** A VM's processes are the guest's: asked of its agent (and of the host, where nothing may escape to). */
const qemuHooks: ConformanceHooks = {
  async processesMatching(env: EnvironmentHandle, marker: string): Promise<number[]> {
    const pattern = `[${marker[0]}]${marker.slice(1)}`;
    const out = await suiteDriver!.inspect(env, `grep -l '${pattern.replace(/'/g, '')}' /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3`);
    return [...out.split('\n').filter((l) => /^\d+$/.test(l)).map(Number), ...hostProcessesMatching(marker)];
  },
  async workDirEntries(env: EnvironmentHandle): Promise<string[]> {
    const out = await suiteDriver!.inspect(env, 'ls -A /m/work');
    return out.split('\n').filter(Boolean).sort();
  },
  rootInside: true,
  // Measured: at the run cgroup's memory.max the guest kernel reclaims and refaults file pages for
  // 30 s and more under TCG (21 s of system time) before its OOM killer acts: past any test timeout.
  oomSkip: kvmUsable() ? undefined : 'under TCG the guest reaches its OOM killer only after 30+ s of reclaim (measured)',
};

runDriverConformance(
  'QEMU',
  async (): Promise<DriverUnderTest> => {
    const ready = await vmReady();
    if (typeof ready === 'string') return { skip: ready };
    return (suiteDriver = newDriver());
  },
  shape,
  qemuHooks,
);

describe('QemuDriver specifics', () => {
  let driver: QemuDriver;
  let env: QemuHandle;
  let tmp: TempDir;
  let skip: string | null = null;
  let image: VmImage;

  before(async () => {
    tmp = makeTempDir('orch-qemu-specific-');
    const ready = await vmReady();
    if (typeof ready === 'string') {
      skip = ready;
      return;
    }
    image = ready;
    driver = newDriver();
    await driver.preflight(shape);
    env = await driver.provision(`qemu-specific-${process.pid}`, shape);
  });
  after(async () => {
    if (driver && env) await driver.destroy(env);
    await driver?.close();
    tmp.cleanup();
  });

  let seq = 0;
  const spec = (over: Partial<RunSpec> & { script: string }): RunSpec => ({
    testId: 'specific', attempt: 1, env: {}, timeoutMs: 20_000, services: [], artifactPaths: [],
    artifactDir: path.join(tmp.path, `art-${++seq}`), maxOutputBytes: 65536, ...over,
  });

  it('by default a reset swaps in the spare VM: the next test meets nothing the last one left in the guest', async (t) => {
    if (skip) return t.skip(skip);
    const cold = newDriver(false);
    const e = await cold.provision(`qemu-cold-${process.pid}`, shape);
    try {
      const first = cold.vmPid(e);
      // root in its VM, a test can change the guest's kernel state and leave a process running
      const o = await cold.run(e, spec({ script: 'cat /proc/sys/kernel/random/boot_id; echo pwned > /proc/sys/kernel/domainname; (setsid sleep 1000 &) ; echo ran' }));
      assert.match(o.stdout, /ran\n$/);
      const bootId = o.stdout.split('\n')[0];
      const spare = await bootedSpare(cold, e);
      assert.notEqual(spare, first, 'the spare is a QEMU of its own');
      await cold.reset(e);
      assert.equal(cold.vmPid(e), spare, 'the reset took the spare');
      assert.throws(() => process.kill(first!, 0), /ESRCH/, 'the VM the test ran in is gone');
      const next = await cold.run(e, spec({ script: 'cat /proc/sys/kernel/random/boot_id; cat /proc/sys/kernel/domainname; cat /proc/[0-9]*/comm 2>/dev/null | grep -cx sleep || true' }));
      const [nextBoot, domain, sleeping] = next.stdout.trim().split('\n');
      assert.notEqual(nextBoot, bootId, 'another boot of the kernel');
      assert.equal(domain, '(none)', "the last test's kernel setting is not there");
      assert.equal(sleeping, '0', "the last test's process is not there");
      // the next spare boots meanwhile, in a QEMU of its own
      const again = await bootedSpare(cold, e);
      assert.ok(again !== spare && again !== first);
    } finally {
      await cold.destroy(e);
      await cold.close();
    }
  });

  it('a spare that died is replaced by a VM booted at the reset; with spares off the reset boots one too', async (t) => {
    if (skip) return t.skip(skip);
    const cold = newDriver(false);
    const e = await cold.provision(`qemu-dead-spare-${process.pid}`, shape);
    try {
      const spare = await bootedSpare(cold, e);
      process.kill(spare, 'SIGKILL');
      await sleepMs(200);
      await cold.reset(e);
      const pid = cold.vmPid(e);
      assert.ok(pid && pid !== spare, 'a VM booted by the reset');
      assert.equal((await cold.run(e, spec({ script: 'echo fine' }))).stdout, 'fine\n');
      assert.deepEqual(await cold.healthCheck(e), { ok: true });
    } finally {
      await cold.destroy(e);
      await cold.close();
    }
    const none = newDriver(false, false);
    const n = await none.provision(`qemu-no-spare-${process.pid}`, shape);
    try {
      const first = none.vmPid(n);
      await sleepMs(500);
      assert.equal(none.sparePid(n), undefined, 'no spare');
      assert.equal(hostProcessesMatching(`qemu-no-spare-${process.pid}/vm-`).length, 1, 'one QEMU for the environment');
      await none.reset(n);
      assert.ok(none.vmPid(n) && none.vmPid(n) !== first, 'another QEMU process');
      assert.equal((await none.run(n, spec({ script: 'echo again' }))).stdout, 'again\n');
    } finally {
      await none.destroy(n);
      await none.close();
    }
    assert.deepEqual(hostProcessesMatching(`qemu-dead-spare-${process.pid}/vm-`), [], 'no QEMU left after destroy');
  });

  it('the VMs of a driver whose process was SIGKILLed are killed and removed by the next driver on the host', async (t) => {
    if (skip) return t.skip(skip);
    const state = makeTempDir('orch-qemu-crash-', { traversable: true });
    stateDirs.push(state);
    const driverJs = path.resolve(__dirname, '../../src/environments/qemu/driver.js');
    const child = spawn(process.execPath, ['-e', `
      const { QemuDriver } = require(${JSON.stringify(driverJs)});
      const d = new QemuDriver({ imageDir: ${JSON.stringify(testImageDir())}, stateDir: ${JSON.stringify(state.path)} });
      const shape = ${JSON.stringify(shape)};
      d.preflight(shape).then(() => d.provision('crashed-env', shape)).then((e) => console.log('UP ' + d.instance + ' ' + d.vmPid(e)), (err) => { console.error(err); process.exit(1); });
      setInterval(() => {}, 1000);
    `], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.on('data', (c) => (out += c));
    for (let i = 0; i < 1200 && !/^UP /m.test(out); i++) await sleepMs(100);
    const [, instance, pid] = /^UP (\S+) (\d+)/m.exec(out) ?? [];
    assert.ok(instance && pid, `the crashing driver booted its VM: ${out}`);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    await sleepMs(300);
    assert.doesNotThrow(() => process.kill(Number(pid), 0), 'its VM outlives it (what the sweep is for)');
    assert.ok(existsSync(path.join(state.path, instance)));

    const next = new QemuDriver({ imageDir: testImageDir(), logger: silentLogger, stateDir: state.path });
    try {
      await next.preflight(shape);
      for (let i = 0; i < 50 && isAlive(Number(pid)); i++) await sleepMs(100);
      assert.equal(isAlive(Number(pid)), false, 'the VM of the dead driver is killed');
      assert.equal(existsSync(path.join(state.path, instance)), false, 'its state dir is removed');
      const roots = ['/sys/fs/cgroup', ...readdirSync('/sys/fs/cgroup').map((c) => path.join('/sys/fs/cgroup', c))];
      assert.deepEqual(roots.map((r) => path.join(r, 'test-orchestrator', instance)).filter((d) => existsSync(d)), [], 'its cgroups are removed');
    } finally {
      await next.close();
    }
  });

  it('runs the guest kernel, as root in the guest, with the shape\'s CPUs and memory; no network but loopback', async (t) => {
    if (skip) return t.skip(skip);
    await driver.reset(env);
    const o = await driver.run(env, spec({ script: 'uname -r; id -u; nproc; grep MemTotal /proc/meminfo; ls /sys/class/net' }));
    assert.equal(o.exitCode, 0, o.stderr);
    const [release, uid, cpus, mem, ...nets] = o.stdout.trim().split('\n');
    assert.equal(release, image.kernelRelease);
    assert.notEqual(release, os.release(), 'the guest kernel is not the host kernel');
    assert.equal(uid, '0');
    assert.equal(cpus, String(shape.cpus));
    const kb = Number(/(\d+)/.exec(mem)![1]);
    assert.ok(kb > shape.memoryMb * 1024 * 0.6 && kb <= shape.memoryMb * 1024, mem);
    assert.deepEqual(nets, ['lo']);
  });

  it('never writes the base disk: a test that writes everywhere leaves it byte-identical, and the next test sees nothing of it', async (t) => {
    if (skip) return t.skip(skip);
    const hash = () => createHash('sha256').update(readFileSync(image.disk)).digest('hex');
    const before = { hash: hash(), mtime: statSync(image.disk).mtimeMs };
    await driver.reset(env);
    const w = await driver.run(env, spec({ script: 'echo pwned > /etc/hostname; rm -rf /usr/share/doc; dd if=/dev/zero of=/dev/vda bs=4k count=1 2>&1; echo end' }));
    assert.match(w.stdout, /end/);
    await driver.reset(env);
    const r = await driver.run(env, spec({ script: 'cat /etc/hostname; ls /usr/share/doc | wc -l' }));
    assert.doesNotMatch(r.stdout, /pwned/);
    assert.doesNotMatch(r.stdout.trim().split('\n')[1] ?? '0', /^0$/);
    assert.deepEqual({ hash: hash(), mtime: statSync(image.disk).mtimeMs }, before);
  });

  it('a VM killed during a test is an InfrastructureError, never a failed test; so is a kernel panic', async (t) => {
    if (skip) return t.skip(skip);
    await driver.reset(env);
    const running = driver.run(env, spec({ script: 'echo started; sleep 100' }));
    for (let i = 0; i < 400 && !existsSync(path.join(driver.jobDirOf(env), 'out', 'stdout')); i++) await new Promise((r) => setTimeout(r, 50));
    process.kill(driver.vmPid(env)!, 'SIGKILL');
    await assert.rejects(running, (err: Error) => {
      assert.ok(err instanceof InfrastructureError && /stopped/.test(err.message), String(err));
      const log = err.files.find((f) => f.name === 'console.log' && f.kind === 'LOG');
      assert.ok(log && existsSync(log.path), `the console log is a LOG of the failed attempt: ${JSON.stringify(err.files)}`);
      return true;
    });
    assert.equal((await driver.healthCheck(env)).ok, false);
    assert.ok(driver.consoleLogOf(env), 'the console log is kept');
    await driver.destroy(env);

    env = await driver.provision(`qemu-specific-${process.pid}`, shape);
    await driver.reset(env);
    const panic = driver.run(env, spec({ script: 'echo c > /proc/sysrq-trigger; sleep 30' }));
    await assert.rejects(panic, InfrastructureError);
    assert.match(readFileSync(driver.consoleLogOf(env)!, 'utf8'), /Kernel panic|sysrq/i, 'the console log says why');
    await driver.destroy(env);
    env = await driver.provision(`qemu-specific-${process.pid}`, shape);
    assert.deepEqual(await driver.healthCheck(env), { ok: true });
  });
});
