import { randomBytes } from 'node:crypto';
import { closeSync, constants, fstatSync, linkSync, openSync, readSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { processLife, processStartTime, sleep, type ProcessLife } from '../infra/process-utils';

/** How long a holder that is exiting (SIGKILLed, being torn down) is waited for. */
export const LOCK_EXITING_WAIT_MS = 5_000;
/** A lock file is a few dozen bytes; more is not ours. */
const MAX_LOCK_BYTES = 256;

export interface LockHolder {
  pid: number;
  /** Start time of the holder (/proc/PID/stat field 22); absent in lock files of older versions. */
  startTime?: string;
}

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
  const me = `${process.pid}\nstart=${processStartTime('self') ?? ''}\n`;
  const deadline = Date.now() + (opts.exitingWaitMs ?? LOCK_EXITING_WAIT_MS);
  for (let round = 0; Date.now() < deadline + 5_000; round++) { // never loop for ever on a directory that fights back
    if (create(path, me)) return handle(path, me);
    const seen = readLock(path);
    if (seen === undefined) continue; // removed meanwhile: try again
    const holder = parseHolder(seen);
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
    takeOver(path, seen);
  }
  throw new Error(`could not take the lock ${path}`);
}

function handle(path: string, me: string): { release(): void } {
  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      if (readLock(path) === me) unlinkQuietly(path);
    },
  };
}

/** Creates the lock with its content in one step (hard link of a file written aside); false when one exists. */
function create(path: string, content: string): boolean {
  const aside = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.new`;
  writeFileSync(aside, content, { mode: 0o600, flag: 'wx' });
  try {
    linkSync(aside, path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  } finally {
    unlinkQuietly(aside);
  }
}

/**
 * Removes a stale lock whose content was `stale`: moved aside atomically first, so a fresh lock another
 * process created since we read it is not deleted but put back.
 */
function takeOver(path: string, stale: string): void {
  const aside = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.stale`;
  try {
    renameSync(path, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return; // someone else removed it
    throw e;
  }
  if (readLock(aside) !== stale) {
    try {
      linkSync(aside, path); // a newer lock: put it back
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e; // a third process holds it now
    }
  }
  unlinkQuietly(aside);
}

/**
 * The lock file's text; undefined when it does not exist. Never follows a link, never blocks on a FIFO,
 * reads at most a few hundred bytes: anything else in its place is an error, not a lock to remove.
 */
function readLock(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw new Error(`the lock ${path} is a symbolic link: remove it if no orchestrator uses this DATA_DIR`);
    throw e;
  }
  try {
    if (!fstatSync(fd).isFile()) throw new Error(`the lock ${path} is not a regular file: remove it if no orchestrator uses this DATA_DIR`);
    const buf = Buffer.alloc(MAX_LOCK_BYTES);
    const n = readSync(fd, buf, 0, MAX_LOCK_BYTES, 0);
    return buf.subarray(0, n).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

export function parseHolder(text: string): LockHolder | undefined {
  const [first, ...rest] = text.split('\n');
  if (!first || !/^\d+$/.test(first.trim())) return undefined;
  const pid = Number(first.trim());
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  const start = rest.find((l) => l.startsWith('start='))?.slice('start='.length).trim();
  return { pid, startTime: start && /^\d+$/.test(start) ? start : undefined };
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}
