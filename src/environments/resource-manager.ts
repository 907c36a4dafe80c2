// Keeps a warm pool of environments for one pool definition on this worker host, so a test does not
// wait for a boot: provisions `capacity` of them, hands out READY ones, resets them after each test,
// and replaces a broken one (UNHEALTHY, destroyed, provisioned anew).

import { randomUUID } from 'node:crypto';
import type { PoolDefinition } from '../config/pools';
import { bestEffort } from '../infra/best-effort';
import type { EnvironmentDriver, EnvironmentHandle, EnvironmentShape, RunOutcome, RunSpec } from './driver';
import type { EnvironmentRecords } from './environment-records';

export interface Lease {
  handle: EnvironmentHandle;
  slot: number;
  /** Tests run since the row's testsRun was last written. */
  testsRunPending?: number;
}

export interface ResourceManagerOptions {
  pool: PoolDefinition;
  driver: EnvironmentDriver;
  /** Where the environments' rows are written (and their changes published): wired by the worker. */
  records: EnvironmentRecords;
  logger: { info(o: object, m: string): void; warn(o: object, m: string): void; error(o: object, m: string): void };
}

const MAX_BACKOFF_MS = 30_000;

export class ResourceManager {
  private readonly idle: Lease[] = [];
  private readonly waiters: ((lease: Lease) => void)[] = [];
  private readonly live = new Map<string, Lease>();
  private stopped = false;
  /** Aborted by stop(): a provision under way (a VM booting) gives up instead of finishing for nothing. */
  private readonly stopping = new AbortController();
  private readonly shape: EnvironmentShape;
  /**
   * Provisions, resets and replacements under way (the executor does not wait for a release): stop()
   * waits for them, so none reaches the driver after the worker has closed it.
   */
  private readonly underWay = new Set<Promise<void>>();

  constructor(private readonly o: ResourceManagerOptions) {
    const p = o.pool;
    this.shape = { pool: p.name, kind: p.kind, arch: p.arch, cpus: p.cpus, memoryMb: p.memoryMb, image: p.image, pids: p.pids, diskMb: p.diskMb };
  }

  get pool(): PoolDefinition {
    return this.o.pool;
  }

  /** Checks the driver can serve the pool, then provisions every slot. */
  async start(): Promise<void> {
    await this.preflight();
    await this.provisionAll();
  }

  /** Whether this host can serve the pool at all (its driver's tools, image, cgroups): throws why not. */
  preflight(): Promise<void> {
    return this.o.driver.preflight(this.shape);
  }

  /**
   * Provisions every slot; resolves when each has been tried once (a failed one is retried in the
   * background) or given up because stop() was called: a VM that is booting does not hold up a shutdown.
   */
  async provisionAll(): Promise<void> {
    await Promise.all(Array.from({ length: this.o.pool.capacity }, (_, slot) => this.provision(slot)));
  }

  private provision(slot: number, attempt = 0): Promise<void> {
    return this.track(this.provisionSlot(slot, attempt));
  }

  private track(p: Promise<void>): Promise<void> {
    this.underWay.add(p);
    void p.finally(() => this.underWay.delete(p)).catch(() => undefined);
    return p;
  }

  private async provisionSlot(slot: number, attempt: number): Promise<void> {
    if (this.stopped) return;
    const id = randomUUID();
    const p = this.o.pool;
    const log = this.o.logger;
    let created = false;
    let handle: EnvironmentHandle | null = null;
    try {
      await this.o.records.provisioning(id, p);
      created = true;
      handle = await this.o.driver.provision(id, this.shape, this.stopping.signal);
      const health = await this.o.driver.healthCheck(handle);
      if (!health.ok) throw new Error(`health check failed right after provisioning: ${health.reason}`);
      if (!this.stopped) await this.o.records.ready(id, 0);
      if (this.stopped) return await this.destroy(handle); // its row is retired with the worker's
      const lease: Lease = { handle, slot };
      this.live.set(id, lease);
      this.offer(lease);
    } catch (err) {
      const message = (err as Error).message;
      if (this.stopped) log.info({ pool: p.name, environmentId: id, reason: message }, 'provisioning given up: the worker is stopping');
      else log.error({ err, pool: p.name, environmentId: id, attempt }, 'provisioning an environment failed');
      // provisioned but never handed out (unhealthy, or its row not written): no sandbox is left behind
      if (handle) await this.destroy(handle);
      if (created) await bestEffort(log, `recording environment ${id} as retired`, () => this.o.records.retired(id, message));
      const delay = Math.min(MAX_BACKOFF_MS, 1_000 * 2 ** attempt);
      if (!this.stopped) setTimeout(() => void this.provision(slot, attempt + 1), delay).unref();
    }
  }

  private async destroy(handle: EnvironmentHandle): Promise<void> {
    await bestEffort(this.o.logger, `destroying environment ${handle.id}`, () => this.o.driver.destroy(handle));
  }

  private offer(lease: Lease): void {
    const waiter = this.waiters.shift();
    if (waiter) waiter(lease);
    else this.idle.push(lease);
  }

  /** A READY environment, marked BUSY with the test; waits while all are busy or being replaced. */
  async acquire(testId: string, signal?: AbortSignal): Promise<Lease> {
    const lease =
      this.idle.shift() ??
      (await new Promise<Lease>((resolve, reject) => {
        const onAbort = () => {
          const i = this.waiters.indexOf(take);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(new Error('aborted while waiting for an environment'));
        };
        const take = (l: Lease) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(l);
        };
        if (signal?.aborted) return onAbort();
        signal?.addEventListener('abort', onAbort, { once: true });
        this.waiters.push(take);
      }));
    try {
      await this.o.records.busy(lease.handle.id, testId, lease.testsRunPending ?? 0);
      lease.testsRunPending = 0;
    } catch (err) {
      this.offer(lease);
      throw err;
    }
    return lease;
  }

  /**
   * After a test: reset and hand out again; a reset that fails makes the environment UNHEALTHY.
   * RESETTING is published as an event only, and a waiting test takes the environment straight from its
   * reset (its BUSY update also counts the test just run): one row update per test, not three.
   */
  release(lease: Lease): Promise<void> {
    return this.track(this.resetAndOffer(lease));
  }

  private async resetAndOffer(lease: Lease): Promise<void> {
    const id = lease.handle.id;
    try {
      await this.o.records.resetting(id);
      await this.o.driver.reset(lease.handle);
      if (this.stopped) return;
      lease.testsRunPending = (lease.testsRunPending ?? 0) + 1;
      if (this.waiters.length) return this.offer(lease);
      await this.o.records.ready(id, lease.testsRunPending);
      lease.testsRunPending = 0;
      this.offer(lease);
    } catch (err) {
      if (this.stopped) return; // destroyed by stop() during its reset
      await this.replace(lease, `reset failed: ${(err as Error).message}`);
    }
  }

  /**
   * The environment is broken: UNHEALTHY, destroyed, and a fresh one provisioned in its slot. The
   * sandbox is destroyed whatever its row updates do: a failed write never leaks it beside its replacement.
   */
  fail(lease: Lease, reason: string): Promise<void> {
    return this.track(this.replace(lease, reason));
  }

  private async replace(lease: Lease, reason: string): Promise<void> {
    const id = lease.handle.id;
    const log = this.o.logger;
    this.live.delete(id);
    log.warn({ pool: this.o.pool.name, environmentId: id, reason }, 'environment unhealthy: replacing it');
    try {
      await this.o.records.unhealthy(id, reason, lease.testsRunPending ?? 0);
    } catch (err) {
      log.error({ err, environmentId: id }, 'recording an unhealthy environment failed');
    } finally {
      await this.destroy(lease.handle);
    }
    await bestEffort(log, `recording environment ${id} as retired`, () => this.o.records.retired(id));
    void this.provision(lease.slot);
  }

  /** Environments running a test now. */
  busy(): Lease[] {
    return [...this.live.values()].filter((l) => !this.idle.includes(l));
  }

  run(lease: Lease, spec: RunSpec): Promise<RunOutcome> {
    return this.o.driver.run(lease.handle, spec);
  }

  async usage(id: string) {
    const lease = this.live.get(id);
    return lease ? this.o.driver.usage(lease.handle) : null;
  }

  /** Destroys every environment; their rows become RETIRED. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping.abort(new Error('the worker is stopping'));
    this.waiters.length = 0; // waiting jobs are aborted through their own signals
    const leases = [...this.live.values()];
    this.live.clear();
    this.idle.length = 0;
    await Promise.all(
      leases.map(async (l) => {
        await this.destroy(l.handle);
        await bestEffort(this.o.logger, `recording environment ${l.handle.id} as retired`, () => this.o.records.retired(l.handle.id));
      }),
    );
    while (this.underWay.size) await Promise.allSettled([...this.underWay]);
  }
}
