// Repairs drift between the database (the source of truth) and the queues, at start and every few
// seconds: dead workers are retired, RUNNING tests whose job vanished are handed back, QUEUED tests
// with no job are queued again (after a Redis restart that lost its data, all of them).

import type { AttemptsService } from './attempts.service';
import type { ServiceDeps } from './context';

const BATCH = 2_000;

export type ReconcilerDeps = Pick<ServiceDeps, 'config' | 'logger' | 'tests' | 'plans' | 'events' | 'queues' | 'environments' | 'now'> & {
  /** Hands back or ends the attempts it finds lost, and ends tests that can never run. */
  attempts: AttemptsService;
};

export class Reconciler {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  /** Where the periodic pass over QUEUED tests goes on from (by submission order). */
  private queuedCursor = 0n;

  constructor(private readonly d: ReconcilerDeps) {}

  /** One full pass now (every QUEUED test checked), then a bounded pass every interval. */
  async start(): Promise<void> {
    await this.pass(true);
    this.timer = setInterval(() => void this.tick(), this.d.config.reconcileIntervalMs);
  }

  private async tick(): Promise<void> {
    if (this.running) return;
    this.running = this.pass(false)
      .catch((err: Error) => this.d.logger.error({ err }, 'reconciler pass failed'))
      .finally(() => {
        this.running = null;
      });
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }

  async pass(full: boolean): Promise<void> {
    await this.retireDeadWorkers();
    await this.handBackLostRunning();
    await this.requeueQueued(full);
    await this.refreshStalePlans();
  }

  /** Plans whose last refresh was lost (a worker died between a test's end and its plan's refresh). */
  private async refreshStalePlans(): Promise<void> {
    for (const id of await this.d.plans.stale()) {
      const plan = await this.d.plans.refresh(id);
      if (plan) this.d.events.emit('plan', plan);
    }
  }

  private async retireDeadWorkers(): Promise<void> {
    const dead = await this.d.environments.deadWorkers(new Date(this.d.now().getTime() - this.d.config.workerHeartbeatMs * 3));
    if (!dead.length) return;
    await this.d.environments.markWorkersStopped(dead);
    for (const e of await this.d.environments.retireOf(dead)) this.d.events.emit('environment', e);
    this.d.events.emit('system', { reason: 'workers lost' });
    this.d.logger.warn({ workers: dead }, 'workers stopped sending heartbeats: their environments are retired');
  }

  /**
   * RUNNING with no job in its queue: the job was lost (Redis lost its data, or a worker's job failed before
   * anything was recorded); another attempt or ERROR. A result that could not be recorded never comes here:
   * its worker ends the test in ERROR with the cause (AttemptsService.finish).
   */
  private async handBackLostRunning(): Promise<void> {
    const running = await this.d.tests.running(10_000);
    for (const [pool, tests] of groupBy(running, (t) => t.pool)) {
      if (!this.d.queues.pools.includes(pool)) continue;
      const missing = new Set(await this.d.queues.missing(pool, tests.map((t) => t.id)));
      for (const t of tests.filter((x) => missing.has(x.id))) {
        const lost = await this.d.attempts.lose(t);
        if (lost) this.d.logger.warn({ testId: t.id, planId: t.planId, attempt: t.attempts, retry: lost.retry }, 'a running test lost its job: handed back');
      }
    }
  }

  /** QUEUED tests whose job is missing are queued again, in submission order (FIFO kept among them). */
  private async requeueQueued(full: boolean): Promise<void> {
    let cursor = full ? 0n : this.queuedCursor;
    let scanned = 0;
    let requeued = 0;
    for (;;) {
      const batch = await this.d.tests.queuedAfter(cursor, BATCH);
      scanned += batch.length;
      for (const [pool, tests] of groupBy(batch, (t) => t.pool)) {
        if (!this.d.queues.pools.includes(pool)) {
          await this.orphaned(pool, tests);
          continue;
        }
        const missing = new Set(await this.d.queues.missing(pool, tests.map((t) => t.id)));
        const lost = tests.filter((t) => missing.has(t.id));
        if (lost.length) {
          await this.d.queues.enqueue(lost.map((t) => ({ testId: t.id, planId: t.planId, pool, priority: t.priority })));
          requeued += lost.length;
        }
      }
      cursor = batch.length ? batch[batch.length - 1].seq : 0n;
      if (batch.length < BATCH) {
        cursor = 0n; // wrapped around: the next pass starts over
        break;
      }
      if (!full) break;
    }
    this.queuedCursor = cursor;
    if (requeued) this.d.logger.warn({ requeued, scanned }, 'queued tests had no job: queued them again');
  }

  /** Tests of a pool that is no longer configured can never run. */
  private async orphaned(pool: string, tests: { id: string; planId: string }[]): Promise<void> {
    for (const t of tests) await this.d.attempts.unservable(t);
    this.d.logger.error({ pool, tests: tests.length }, 'tests of a pool that is no longer configured end in ERROR');
  }
}

function groupBy<T>(items: T[], key: (t: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const i of items) m.set(key(i), [...(m.get(key(i)) ?? []), i]);
  return m;
}
