import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { queuePriority } from '../domain/priority';
import { parseRunTest, queueName, RUN_TEST } from './catalog';

export interface QueuedTest {
  testId: string;
  planId: string;
  pool: string;
  /** The plan's priority (higher first). */
  priority: number;
}

const ADD_CHUNK = 5_000;

/** Hands tests to the workers of their pools: one BullMQ queue per pool, jobId = test id. */
export class TestQueues {
  private readonly queues = new Map<string, Queue>();

  constructor(
    private readonly connection: Redis,
    private readonly prefix: string,
    pools: readonly string[],
  ) {
    for (const pool of pools) this.queues.set(pool, new Queue(queueName(pool), { connection, prefix: `${prefix}:bull` }));
  }

  get pools(): string[] {
    return [...this.queues.keys()];
  }

  queue(pool: string): Queue {
    const q = this.queues.get(pool);
    if (!q) throw new Error(`no queue for pool "${pool}"`);
    return q;
  }

  async enqueue(tests: readonly QueuedTest[]): Promise<void> {
    const byPool = new Map<string, QueuedTest[]>();
    for (const t of tests) {
      parseRunTest({ testId: t.testId, planId: t.planId });
      const list = byPool.get(t.pool) ?? [];
      list.push(t);
      byPool.set(t.pool, list);
    }
    for (const [pool, list] of byPool) {
      const q = this.queue(pool);
      for (let i = 0; i < list.length; i += ADD_CHUNK) {
        await q.addBulk(
          list.slice(i, i + ADD_CHUNK).map((t) => ({
            name: RUN_TEST,
            data: { testId: t.testId, planId: t.planId },
            opts: { jobId: t.testId, priority: queuePriority(t.priority), removeOnComplete: true, removeOnFail: true },
          })),
        );
      }
    }
  }

  /** Removes a waiting job; false when it is not waiting (running, or not there). */
  async remove(pool: string, testId: string): Promise<boolean> {
    const q = this.queues.get(pool);
    if (!q) return false;
    try {
      return (await q.remove(testId)) === 1;
    } catch (err) {
      // the expected answer for a job a worker holds ("… is locked by another worker"): it is running
      if (/locked/i.test((err as Error).message)) return false;
      throw err;
    }
  }

  /** Which of these tests have no job at all in their pool's queue (a job's hash is gone once it ended). */
  async missing(pool: string, testIds: readonly string[]): Promise<string[]> {
    if (!testIds.length) return [];
    const q = this.queue(pool);
    const pipeline = this.connection.pipeline();
    for (const id of testIds) pipeline.exists(q.toKey(id));
    const res = (await pipeline.exec()) ?? [];
    return testIds.filter((_, i) => res[i]?.[1] === 0);
  }

  async ping(): Promise<void> {
    await this.connection.ping();
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close()));
  }
}
