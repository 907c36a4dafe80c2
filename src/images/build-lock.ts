// One builder per image name across processes: a lock file naming its holder (src/infra/pid-lock.ts:
// pid and start time, created whole). A lock whose holder is gone (or whose pid now names another
// process) is taken over; one held by a live process is waited for — it is building the same image,
// and what it builds is then up to date.

import { randomBytes } from 'node:crypto';
import { sleep } from '../infra/process-utils';
import { releaseLockFile, tryLockFile, type LockHolder } from '../infra/pid-lock';
import { abortError } from './tool';

export interface BuildLock {
  release(): void;
}

export type LockHolderInfo = Pick<LockHolder, 'pid' | 'startTime'>;

const HINT = 'remove it if no image build is running';

/** One attempt: the lock, or who holds it (alive or exiting). */
export function tryBuildLock(file: string): { lock: BuildLock } | { holder: LockHolderInfo } {
  // a tag of its own: two builds in one process (two deployments' workers) never release each other's lock
  const r = tryLockFile(file, `build-${randomBytes(6).toString('hex')}`, HINT);
  if (!r.ok) return { holder: { pid: r.holder.pid, startTime: r.holder.startTime } };
  let released = false;
  return {
    lock: {
      release() {
        if (released) return;
        released = true;
        releaseLockFile(file, r.content);
      },
    },
  };
}

/** Waits for the lock (polling every `pollMs`), telling `onWait` once who holds it. */
export async function acquireBuildLock(
  file: string,
  opts: { signal?: AbortSignal; pollMs?: number; onWait?(holder: LockHolderInfo): void } = {},
): Promise<BuildLock> {
  let told = false;
  for (;;) {
    if (opts.signal?.aborted) throw abortError(opts.signal);
    const r = tryBuildLock(file);
    if ('lock' in r) return r.lock;
    if (!told) {
      told = true;
      opts.onWait?.(r.holder);
    }
    await sleep(opts.pollMs ?? 250);
  }
}
