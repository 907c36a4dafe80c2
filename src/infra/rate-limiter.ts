import type { Redis } from 'ioredis';

/**
 * Fixed-window counters in Redis, shared by every API process: `take` counts one use of `key` in the
 * current window unless `limit` uses were counted already. A refused use is not counted (a client that
 * keeps hammering is not kept out longer), and nothing else is written.
 */
const TAKE = `
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
local limit = tonumber(ARGV[1])
if n >= limit then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]); ttl = tonumber(ARGV[2]) end
  return {0, ttl}
end
n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return {1, limit - n}
`;

export type Take = { allowed: true; left: number } | { allowed: false; retryAfterMs: number };

export class RateLimiter {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  async take(key: string, limit: number, windowMs: number): Promise<Take> {
    const [ok, n] = (await this.redis.eval(TAKE, 1, `${this.prefix}:rate:${key}`, limit, windowMs)) as [number, number];
    return ok === 1 ? { allowed: true, left: n } : { allowed: false, retryAfterMs: Math.max(1, n) };
  }
}
