// Lock files that name their holder: a file holding a pid, its start time (/proc/PID/stat field 22) and
// an optional tag, created whole (written aside, then hard-linked into place) so no reader ever sees it
// empty. The kernel does not release them (an flock would need a native package): a holder is judged
// from /proc (process-utils' processLife), and the lock of a holder that is gone is taken over. Used by
// the embedded database's lock (db/lock-file.ts) and the host-wide CPU reservations of performance
// tests (environments/cgroups/cpu-reservations.ts) and one image builder per name (images/build-lock.ts).

import { randomBytes } from 'node:crypto';
import { closeSync, constants, fstatSync, linkSync, openSync, readSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { processLife, processStartTime, type ProcessLife } from './process-utils';

/** A lock file is a few dozen bytes; more is not ours. */
const MAX_LOCK_BYTES = 256;

export interface LockHolder {
  pid: number;
  /** Start time of the holder (/proc/PID/stat field 22); absent in lock files of older versions. */
  startTime?: string;
  /** What the holder holds it for (e.g. a run), when it said. */
  tag?: string;
}

/** The content of a lock held by this process, tagged with `tag` when given (one line, no newline). */
export function ownLockContent(tag?: string): string {
  if (tag !== undefined && !/^[\x21-\x7e]{1,100}$/.test(tag)) throw new Error(`invalid lock tag '${tag}'`);
  return `${process.pid}\nstart=${processStartTime('self') ?? ''}\n${tag === undefined ? '' : `tag=${tag}\n`}`;
}

/** Creates the lock with its content in one step (hard link of a file written aside); false when one exists. */
export function createLockFile(path: string, content: string): boolean {
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
export function takeOverLockFile(path: string, stale: string): void {
  const aside = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.stale`;
  try {
    renameSync(path, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return; // someone else removed it
    throw e;
  }
  if (readLockFile(aside) !== stale) {
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
 * reads at most a few hundred bytes: anything else in its place is an error (`hint` says what to do),
 * not a lock to remove.
 */
export function readLockFile(path: string, hint = 'remove it if nothing uses it'): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw new Error(`the lock ${path} is a symbolic link: ${hint}`);
    throw e;
  }
  try {
    if (!fstatSync(fd).isFile()) throw new Error(`the lock ${path} is not a regular file: ${hint}`);
    const buf = Buffer.alloc(MAX_LOCK_BYTES);
    const n = readSync(fd, buf, 0, MAX_LOCK_BYTES, 0);
    return buf.subarray(0, n).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

export function parseLockHolder(text: string): LockHolder | undefined {
  const [first, ...rest] = text.split('\n');
  if (!first || !/^\d+$/.test(first.trim())) return undefined;
  const pid = Number(first.trim());
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  const start = rest.find((l) => l.startsWith('start='))?.slice('start='.length).trim();
  const tag = rest.find((l) => l.startsWith('tag='))?.slice('tag='.length).trim();
  return { pid, startTime: start && /^\d+$/.test(start) ? start : undefined, ...(tag ? { tag } : {}) };
}

export function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/** Releases a lock this process holds with `content`: removed only while it is still ours. */
export function releaseLockFile(path: string, content: string): void {
  if (readLockFile(path) === content) unlinkQuietly(path);
}

export type TryLockResult = { ok: true; content: string } | { ok: false; holder: LockHolder; life: ProcessLife };

/**
 * Takes the lock `path` for this process without waiting: ok, or who holds it (alive, or exiting: a
 * holder being torn down may still have processes about). A holder that is gone (no such pid, or a
 * reused one), dead (a zombie), or a file that names no holder, is taken over.
 */
export function tryLockFile(path: string, tag?: string, hint?: string): TryLockResult {
  const content = ownLockContent(tag);
  for (let round = 0; round < 5; round++) {
    if (createLockFile(path, content)) return { ok: true, content };
    const seen = readLockFile(path, hint);
    if (seen === undefined) continue; // released meanwhile
    const holder = parseLockHolder(seen);
    const life: ProcessLife = holder ? processLife(holder.pid, holder.startTime) : 'gone';
    if (holder && (life === 'alive' || life === 'exiting')) return { ok: false, holder, life };
    takeOverLockFile(path, seen);
  }
  throw new Error(`could not take the lock ${path}: it keeps changing`);
}
