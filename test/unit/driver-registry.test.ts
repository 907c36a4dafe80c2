// The driver registry (kind → factory) and the container driver's configuration section: parsed once
// from CONTAINER_* (with IMAGE_DIR and SANDBOX_USER), every bad value listed at start, and the same
// schema guarding the section where a driver is made (in process, or in its driver host).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CONFIG_VARIABLES, ConfigError, loadConfig } from '../../src/config/config';
import { ContainerDriver } from '../../src/environments/container/driver';
import { QemuDriver } from '../../src/environments/qemu/driver';
import { createDriver, driverFactory, parseDriverConfig, registeredKinds } from '../../src/environments/registry';
import { RemoteDriver } from '../../src/environments/remote/remote.driver';

const quiet = { info() {}, warn() {}, error() {} };

function problemsOf(env: NodeJS.ProcessEnv): string[] {
  try {
    loadConfig(env);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `a ConfigError, got ${String(e)}`);
    return e.problems;
  }
  assert.fail(`accepted ${JSON.stringify(env)}`);
}

describe('the container driver configuration section', () => {
  it('has defaults, and takes the image dir and sandbox user from the shared settings', () => {
    const c = loadConfig({ IMAGE_DIR: '/srv/images', SANDBOX_USER: '1234:2345' });
    assert.deepEqual(c.drivers.CONTAINER, {
      imageDir: '/srv/images',
      bwrapPath: '/usr/bin/bwrap',
      setprivPath: '/usr/bin/setpriv',
      stateDir: undefined,
      sandboxUid: 1234,
      sandboxGid: 2345,
      cgroupRoot: '/sys/fs/cgroup',
      cgroupParent: 'test-orchestrator',
      cpuLockDir: undefined,
      disableCgroups: false,
      buildMissingImages: true,
      nativeRunner: true,
      phaseTimings: false,
    });
    for (const name of ['CONTAINER_BWRAP_PATH', 'CONTAINER_SETPRIV_PATH', 'CONTAINER_STATE_DIR', 'CONTAINER_CGROUP_ROOT', 'CONTAINER_CGROUP_PARENT', 'CONTAINER_CPU_LOCK_DIR', 'CONTAINER_DISABLE_CGROUPS', 'CONTAINER_BUILD_MISSING_IMAGES', 'CONTAINER_NATIVE_RUNNER', 'CONTAINER_PHASE_TIMINGS']) {
      assert.ok(CONFIG_VARIABLES.includes(name), `${name} is a known variable`);
    }
  });

  it('reads every CONTAINER_* variable (an empty one counts as unset)', () => {
    const c = loadConfig({
      CONTAINER_BWRAP_PATH: '/opt/bwrap',
      CONTAINER_SETPRIV_PATH: '/opt/setpriv',
      CONTAINER_STATE_DIR: '/var/lib/orch/state',
      CONTAINER_CGROUP_ROOT: '/mnt/cgroup',
      CONTAINER_CGROUP_PARENT: 'system.slice/orch.service',
      CONTAINER_CPU_LOCK_DIR: '/run/orch/cpus',
      CONTAINER_DISABLE_CGROUPS: 'true',
      CONTAINER_BUILD_MISSING_IMAGES: '0',
      CONTAINER_NATIVE_RUNNER: 'false',
      CONTAINER_PHASE_TIMINGS: '1',
    }).drivers.CONTAINER!;
    assert.equal(c.nativeRunner, false);
    assert.equal(c.phaseTimings, true);
    assert.equal(c.bwrapPath, '/opt/bwrap');
    assert.equal(c.setprivPath, '/opt/setpriv');
    assert.equal(c.stateDir, '/var/lib/orch/state');
    assert.equal(c.cgroupRoot, '/mnt/cgroup');
    assert.equal(c.cgroupParent, 'system.slice/orch.service');
    assert.equal(c.cpuLockDir, '/run/orch/cpus');
    assert.equal(c.disableCgroups, true);
    assert.equal(c.buildMissingImages, false);
    assert.equal(loadConfig({ CONTAINER_BWRAP_PATH: '', CONTAINER_DISABLE_CGROUPS: '' }).drivers.CONTAINER!.bwrapPath, '/usr/bin/bwrap');
  });

  it('lists every bad value at start, with the pools', () => {
    const problems = problemsOf({
      CONTAINER_BWRAP_PATH: 'bwrap',
      CONTAINER_SETPRIV_PATH: '/usr/bin/set\0priv',
      CONTAINER_CGROUP_ROOT: 'sys/fs/cgroup',
      CONTAINER_CGROUP_PARENT: 'test-orchestrator/../../system.slice',
      CONTAINER_DISABLE_CGROUPS: 'maybe',
      CONTAINER_CPU_LOCK_DIR: 'relative/cpus',
      POOLS: '[]',
    });
    const has = (re: RegExp) => assert.ok(problems.some((p) => re.test(p)), `${re} in ${JSON.stringify(problems)}`);
    has(/^CONTAINER_BWRAP_PATH: an absolute path/);
    has(/^CONTAINER_SETPRIV_PATH: an absolute path/);
    has(/^CONTAINER_CGROUP_ROOT: an absolute path/);
    has(/^CONTAINER_CGROUP_PARENT: a cgroup path below the root/);
    has(/^CONTAINER_DISABLE_CGROUPS:/);
    has(/^CONTAINER_CPU_LOCK_DIR: an absolute path/);
    has(/^POOLS pools: at least one pool/);
  });

  it('refuses cgroup parents that leave the hierarchy or are not names', () => {
    for (const parent of ['/abs', '..', 'a/..', 'a/./b', 'a//b', '.hidden', 'a b', 'a/\0']) {
      const problems = problemsOf({ CONTAINER_CGROUP_PARENT: parent });
      assert.ok(problems.some((p) => p.startsWith('CONTAINER_CGROUP_PARENT:')), `${JSON.stringify(parent)}: ${problems}`);
    }
  });
});

describe('the driver registry', () => {
  it('has a factory for each kind it can run, none for the others', () => {
    assert.deepEqual(registeredKinds(), ['CONTAINER', 'QEMU']);
    assert.equal(driverFactory('CONTAINER')?.kind, 'CONTAINER');
    assert.equal(driverFactory('QEMU')?.kind, 'QEMU');
    assert.throws(() => createDriver('VM' as never, {}, { logger: quiet }), /no environment driver for kind VM \(drivers: CONTAINER, QEMU\)/);
    const qemu = createDriver('QEMU', loadConfig({ IMAGE_DIR: '/srv/images' }).drivers.QEMU, { logger: quiet });
    assert.ok(qemu instanceof QemuDriver);
    assert.equal(qemu.capabilities.services, true);
  });

  it('makes a driver of a kind from its configuration section, with its capabilities', () => {
    const section = loadConfig({ IMAGE_DIR: '/srv/images' }).drivers.CONTAINER;
    const driver = createDriver('CONTAINER', section, { logger: quiet });
    assert.ok(driver instanceof ContainerDriver);
    assert.equal(driver.kind, 'CONTAINER');
    const root = process.getuid?.() === 0;
    assert.deepEqual(driver.capabilities, { diskLimit: root, resourceLimits: true, dedicatedCpus: true, detailedMetrics: true, services: true, coreDumps: true });
    const noCgroups = createDriver('CONTAINER', { ...section, disableCgroups: true }, { logger: quiet });
    assert.equal(noCgroups.capabilities.resourceLimits, false);
    assert.equal(noCgroups.capabilities.dedicatedCpus, false);
  });

  it('validates a section where the driver is made, listing every problem', () => {
    assert.throws(
      () => createDriver('CONTAINER', { imageDir: 'images', cgroupParent: '../x', disableCgroups: 'yes' }, { logger: quiet }),
      (err: Error) => {
        assert.match(err.message, /^invalid CONTAINER driver configuration: /);
        assert.match(err.message, /imageDir: an absolute path/);
        assert.match(err.message, /cgroupParent: a cgroup path below the root/);
        assert.match(err.message, /disableCgroups: /);
        return true;
      },
    );
    assert.throws(() => parseDriverConfig('CONTAINER', null), /invalid CONTAINER driver configuration/);
  });

  it('a driver host driver checks its section at once, before any process is started', () => {
    assert.throws(() => new RemoteDriver('CONTAINER', { imageDir: '/srv/images', bwrapPath: 'bwrap' }, quiet), /bwrapPath: an absolute path/);
    assert.throws(() => new RemoteDriver('QEMU', {}, quiet), /invalid QEMU driver configuration: imageDir/);
    const remote = new RemoteDriver('CONTAINER', { imageDir: '/srv/images', disableCgroups: true }, quiet);
    assert.equal(remote.capabilities.resourceLimits, false, 'the capabilities of the driver it hosts');
  });

  it('a closed driver host driver starts no host again: a late call is refused', async () => {
    const remote = new RemoteDriver('CONTAINER', { imageDir: '/srv/images', disableCgroups: true }, quiet);
    const env = { id: 'late', shape: { pool: 'p', kind: 'CONTAINER' as const, arch: 'x86_64', cpus: 1, memoryMb: 64, image: 'none', pids: 8 } };
    assert.equal((await remote.healthCheck(env)).ok, false, 'answered by the host');
    const pid = remote.hostPid!;
    assert.ok(pid > 0);
    await remote.close();
    assert.throws(() => process.kill(pid, 0), /ESRCH/, 'the host is gone');
    await assert.rejects(remote.destroy(env), /the CONTAINER driver is closed/);
    assert.equal(remote.hostPid, undefined, 'no host started again');
  });
});
