// A lease in Redis: one holder at a time across every process of a deployment (SET NX with an expiry,
// renewed while held, released only by its holder). A holder that dies loses it when it expires.

import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';

const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
const RENEW = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;

export interface Lease {
  /** False once the lease was lost (expired while this process was stalled, or taken over). */
  readonly held: boolean;
  release(): Promise<void>;
}

/** Takes the lease `key` for `ttlMs` (renewed every third of it), or null when another process holds it. */
export async function tryLease(redis: Redis, key: string, ttlMs: number, onLost?: () => void): Promise<Lease | null> {
  const token = randomUUID();
  if ((await redis.set(key, token, 'PX', ttlMs, 'NX')) !== 'OK') return null;
  let held = true;
  const timer = setInterval(() => {
    redis.eval(RENEW, 1, key, token, String(ttlMs)).then(
      (r) => {
        if (Number(r) === 1 || !held) return;
        held = false;
        clearInterval(timer);
        onLost?.();
      },
      () => undefined, // Redis unreachable for a moment: the next renewal tries again before it expires
    );
  }, Math.max(100, Math.floor(ttlMs / 3)));
  timer.unref();
  return {
    get held() {
      return held;
    },
    async release() {
      clearInterval(timer);
      if (!held) return;
      held = false;
      await redis.eval(RELEASE, 1, key, token);
    },
  };
}
