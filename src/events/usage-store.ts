import type { Redis } from 'ioredis';
import type { UsageView } from '../views/view.types';

/**
 * Live resource use of busy environments, reported by their workers every few seconds and kept in Redis
 * with a short expiry: what a dead worker last reported disappears by itself.
 */
export class UsageStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  private key(environmentId: string): string {
    return `${this.prefix}:usage:${environmentId}`;
  }

  async put(entries: { environmentId: string; usage: UsageView }[], ttlMs: number): Promise<void> {
    if (!entries.length) return;
    const pipeline = this.redis.pipeline();
    for (const e of entries) pipeline.set(this.key(e.environmentId), JSON.stringify(e.usage), 'PX', ttlMs);
    await pipeline.exec();
  }

  async clear(environmentId: string): Promise<void> {
    await this.redis.del(this.key(environmentId));
  }

  async getMany(ids: readonly string[]): Promise<Map<string, UsageView>> {
    if (!ids.length) return new Map();
    const values = await this.redis.mget(...ids.map((id) => this.key(id)));
    const out = new Map<string, UsageView>();
    values.forEach((v, i) => {
      if (v) out.set(ids[i], JSON.parse(v) as UsageView);
    });
    return out;
  }
}
