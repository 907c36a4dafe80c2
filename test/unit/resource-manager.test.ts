// The resource manager writes its environments through the EnvironmentRecords port and never leaves a
// sandbox behind: checked with a fake port (no database) and a fake driver that counts what is alive.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_POOLS, type PoolDefinition } from '../../src/config/pools';
import type { EnvironmentDriver, EnvironmentHandle, EnvironmentShape, HealthStatus, RunOutcome } from '../../src/environments/driver';
import type { EnvironmentRecords } from '../../src/environments/environment-records';
import { ResourceManager } from '../../src/environments/resource-manager';

const POOL: PoolDefinition = { ...DEFAULT_POOLS[0], capacity: 2 };
const quiet = { info() {}, warn() {}, error() {} };

/** Sandboxes as a set of live ids; each step can be made to fail. */
class FakeDriver implements EnvironmentDriver {
  readonly kind = 'CONTAINER' as const;
  readonly capabilities = { diskLimit: false, resourceLimits: false, dedicatedCpus: false, detailedMetrics: false, services: false, coreDumps: false };
  readonly alive = new Set<string>();
  readonly destroyed: string[] = [];
  healthy = true;
  resetFails = false;
  async preflight(_shape: EnvironmentShape): Promise<void> {}
  async provision(id: string, shape: EnvironmentShape): Promise<EnvironmentHandle> {
    this.alive.add(id);
    return { id, shape };
  }
  async run(): Promise<RunOutcome> {
    throw new Error('not used');
  }
  async reset(_env: EnvironmentHandle): Promise<void> {
    if (this.resetFails) throw new Error('reset broke');
  }
  async healthCheck(): Promise<HealthStatus> {
    return this.healthy ? { ok: true } : { ok: false, reason: 'the fake is set unhealthy' };
  }
  async usage() {
    return null;
  }
  async destroy(env: EnvironmentHandle): Promise<void> {
    this.alive.delete(env.id);
    this.destroyed.push(env.id);
  }
}

/** The rows as the port was told them; `failOn` makes one kind of write throw. */
class FakeRecords implements EnvironmentRecords {
  readonly rows = new Map<string, { status: string; testId: string | null; testsRun: number; failures: number; lastError?: string }>();
  readonly published: { id: string; status: string }[] = [];
  failOn = new Set<string>();
  private write(id: string, status: string, change: { testId?: string | null; testsRun?: number; lastError?: string; failure?: boolean } = {}) {
    if (this.failOn.has(status)) throw new Error(`database unreachable (${status})`);
    const r = this.rows.get(id) ?? { status, testId: null, testsRun: 0, failures: 0 };
    r.status = status;
    if (change.testId !== undefined) r.testId = change.testId;
    r.testsRun += change.testsRun ?? 0;
    if (change.lastError !== undefined) r.lastError = change.lastError;
    if (change.failure) r.failures += 1;
    this.rows.set(id, r);
    this.published.push({ id, status });
  }
  async provisioning(id: string) {
    this.write(id, 'PROVISIONING');
  }
  async ready(id: string, testsRun: number) {
    this.write(id, 'READY', { testId: null, testsRun });
  }
  async busy(id: string, testId: string, testsRun: number) {
    this.write(id, 'BUSY', { testId, testsRun });
  }
  async resetting(id: string) {
    this.published.push({ id, status: 'RESETTING' });
  }
  async unhealthy(id: string, reason: string, testsRun: number) {
    this.write(id, 'UNHEALTHY', { testId: null, lastError: reason, testsRun, failure: true });
  }
  async retired(id: string, lastError?: string) {
    this.write(id, 'RETIRED', { testId: null, lastError });
  }
  withStatus(status: string): string[] {
    return [...this.rows].filter(([, r]) => r.status === status).map(([id]) => id);
  }
}

async function until(what: string, ok: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  assert.ok(ok(), `${what} (waited ${ms} ms)`);
}

function setup(pool = POOL) {
  const driver = new FakeDriver();
  const records = new FakeRecords();
  const manager = new ResourceManager({ pool, driver, records, logger: quiet });
  return { driver, records, manager };
}

describe('resource manager (fake port, fake driver)', () => {
  it('provisions its capacity READY; a test makes one BUSY, its release counts it and makes it READY', async () => {
    const { driver, records, manager } = setup();
    await manager.start();
    assert.equal(records.withStatus('READY').length, 2);
    const lease = await manager.acquire('test-1');
    assert.deepEqual(records.rows.get(lease.handle.id)?.status, 'BUSY');
    assert.equal(records.rows.get(lease.handle.id)?.testId, 'test-1');
    await manager.release(lease);
    const r = records.rows.get(lease.handle.id)!;
    assert.deepEqual([r.status, r.testId, r.testsRun], ['READY', null, 1]);
    assert.ok(records.published.some((p) => p.id === lease.handle.id && p.status === 'RESETTING'), 'RESETTING published');
    await manager.stop();
    assert.equal(driver.alive.size, 0, 'nothing alive after stop');
    assert.equal(records.withStatus('RETIRED').length, 2);
  });

  it('fail: the sandbox is destroyed even when its UNHEALTHY write fails, and a replacement takes its slot', async () => {
    const { driver, records, manager } = setup({ ...POOL, capacity: 1 });
    await manager.start();
    const lease = await manager.acquire('test-1');
    records.failOn.add('UNHEALTHY');
    await manager.fail(lease, 'environment fault: boom');
    assert.ok(driver.destroyed.includes(lease.handle.id), 'the broken sandbox is destroyed');
    assert.equal(records.rows.get(lease.handle.id)?.status, 'RETIRED');
    await until('a replacement is READY', () => records.withStatus('READY').length === 1);
    assert.equal(driver.alive.size, 1, 'one sandbox alive for one slot: the broken one did not leak');
    await manager.stop();
    assert.equal(driver.alive.size, 0);
  });

  it('a failed reset makes the environment UNHEALTHY (counted), destroyed and replaced', async () => {
    const { driver, records, manager } = setup({ ...POOL, capacity: 1 });
    await manager.start();
    const lease = await manager.acquire('test-1');
    driver.resetFails = true;
    await manager.release(lease);
    const r = records.rows.get(lease.handle.id)!;
    assert.deepEqual([r.status, r.failures], ['RETIRED', 1]);
    assert.match(r.lastError ?? '', /reset failed: reset broke/);
    driver.resetFails = false;
    await until('a replacement is READY', () => records.withStatus('READY').length === 1);
    assert.equal(driver.alive.size, 1);
    await manager.stop();
  });

  it('provisioning: a sandbox that fails its health check, or whose READY write fails, is destroyed', async () => {
    const { driver, records, manager } = setup({ ...POOL, capacity: 1 });
    driver.healthy = false;
    records.failOn.add('READY');
    const starting = manager.start();
    await starting;
    const first = [...records.rows.keys()][0];
    assert.equal(records.rows.get(first)?.status, 'RETIRED');
    assert.match(records.rows.get(first)?.lastError ?? '', /health check failed/);
    assert.equal(driver.alive.size, 0, 'the unhealthy sandbox is not left behind');
    driver.healthy = true; // the next try (after 1 s) passes its health check, but its READY write fails
    await until('a second sandbox was provisioned and destroyed', () => driver.destroyed.length === 2, 8_000);
    assert.equal(driver.alive.size, 0, 'a sandbox whose row could not be written is not left behind');
    await manager.stop();
  });

  it('stop waits for a reset and a replacement under way: the driver is called by none of them after stop()', async () => {
    const { driver, records, manager } = setup();
    await manager.start();
    // a reset that goes on until its environment is destroyed (a VM reset waiting for its spare's boot)
    const destroyedNow = new Set<string>();
    const destroy = driver.destroy.bind(driver);
    driver.destroy = async (env) => {
      destroyedNow.add(env.id);
      return destroy(env);
    };
    let resets = 0;
    driver.reset = async (env) => {
      resets += 1;
      await until('destroyed during its reset', () => destroyedNow.has(env.id));
      throw new Error('destroyed during its reset');
    };
    const calls: string[] = [];
    let stopped = false;
    for (const m of ['provision', 'healthCheck', 'reset', 'destroy'] as const) {
      const f = (driver[m] as (...a: unknown[]) => Promise<unknown>).bind(driver);
      (driver as unknown as Record<string, unknown>)[m] = (...a: unknown[]) => {
        if (stopped) calls.push(m);
        return f(...a);
      };
    }
    const [a, b] = [await manager.acquire('test-1'), await manager.acquire('test-2')];
    void manager.release(a); // as the executor does: not awaited
    void manager.fail(b, 'environment fault: its VM died');
    await until('the reset started', () => resets === 1);
    await manager.stop();
    stopped = true;
    await new Promise((r) => setTimeout(r, 1_500)); // a replacement's retry would come after 1 s
    assert.deepEqual(calls, [], 'no driver call after stop()');
    assert.equal(driver.alive.size, 0);
    assert.deepEqual(records.withStatus('RETIRED').sort(), [...records.rows.keys()].sort(), 'every row RETIRED');
    assert.equal(records.rows.get(a.handle.id)?.failures, 0, 'a reset cut short by the stop is no fault of the environment');
  });

  it('stop: every sandbox destroyed and retired, also when a destroy fails', async () => {
    const { driver, records, manager } = setup();
    await manager.start();
    const broken = [...driver.alive][0];
    const destroy = driver.destroy.bind(driver);
    driver.destroy = async (env) => {
      if (env.id === broken) throw new Error('destroy broke');
      return destroy(env);
    };
    await manager.stop();
    assert.deepEqual(records.withStatus('RETIRED').sort(), [...records.rows.keys()].sort(), 'every row RETIRED');
    assert.deepEqual([...driver.alive], [broken], 'only the one whose destroy failed');
  });
});
