import { createLockFile, ownLockContent, parseLockHolder, readLockFile, takeOverLockFile, unlinkQuietly, type LockHolder } from '../infra/pid-lock';
import { processLife, sleep, type ProcessLife } from '../infra/process-utils';

export type { LockHolder };
export { parseLockHolder as parseHolder };

const HINT = 'remove it if no orchestrator uses this DATA_DIR';

/** How long a holder that is exiting (SIGKILLed, being torn down) is waited for. */
export const LOCK_EXITING_WAIT_MS = 5_000;

export interface LockFileOptions {
  /** How long to wait for a holder that is exiting. Default {@link LOCK_EXITING_WAIT_MS}. */
  exitingWaitMs?: number;
  /** Told when a lock left by a process that is gone (or a zombie) is taken over. */
  onStale?(holder: LockHolder, life: ProcessLife): void;
}

/**
 * An exclusive lock on a directory, held by this process: a file holding our pid and our start time.
 *
 * The kernel does not release it for us (an flock would need a native package), so a holder is judged
 * from /proc when the file exists:
 * - gone (no such pid, or the pid now names a process with another start time: reused), or dead (a
 *   zombie not yet reaped by its parent): its lock is taken over;
 * - exiting (SIGKILLed, PF_EXITING or a pending SIGKILL): waited for, up to `exitingWaitMs`, then as above —
 *   a supervisor that restarts at once after a SIGKILL is not refused;
 * - alive: a clear error.
 * The file is created whole (written aside, then hard-linked into place), so no reader ever sees it empty.
 */
export async function acquireLockFile(path: string, what: string, opts: LockFileOptions = {}): Promise<{ release(): void }> {
  const me = ownLockContent();
  const deadline = Date.now() + (opts.exitingWaitMs ?? LOCK_EXITING_WAIT_MS);
  for (let round = 0; Date.now() < deadline + 5_000; round++) { // never loop for ever on a directory that fights back
    if (createLockFile(path, me)) return handle(path, me);
    const seen = readLockFile(path, HINT);
    if (seen === undefined) continue; // removed meanwhile: try again
    const holder = parseLockHolder(seen);
    const life: ProcessLife = holder ? processLife(holder.pid, holder.startTime) : 'gone';
    if (holder && life === 'alive') {
      const who = holder.pid === process.pid ? 'this process' : `another process (pid ${holder.pid})`;
      throw new Error(
        `${what} is in use by ${who}, lock ${path}. Only one process may open the embedded ` +
          `database: stop the other one, use another DATA_DIR, or set DATABASE_URL to a PostgreSQL server for several processes.`,
      );
    }
    if (holder && life === 'exiting') {
      if (Date.now() >= deadline) {
        throw new Error(`${what} is still held by pid ${holder.pid}, which has been exiting for longer than ${opts.exitingWaitMs ?? LOCK_EXITING_WAIT_MS} ms (lock ${path})`);
      }
      await sleep(20);
      continue;
    }
    if (!holder && round === 0) {
      // not a lock this version writes (garbage, or an older version between create and write): look again once
      await sleep(100);
      continue;
    }
    opts.onStale?.(holder ?? { pid: 0 }, life);
    takeOverLockFile(path, seen);
  }
  throw new Error(`could not take the lock ${path}`);
}

function handle(path: string, me: string): { release(): void } {
  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      if (readLockFile(path, HINT) === me) unlinkQuietly(path);
    },
  };
}

