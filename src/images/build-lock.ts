// One builder per image name across processes: a lock file created whole with O_EXCL semantics (written
// aside, then hard-linked into place) holding the holder's pid and start time. A lock whose holder is
// gone (or whose pid now names another process) is taken over; one held by a live process is waited
// for — it is building the same image, and what it builds is then up to date.

import { randomBytes } from 'node:crypto';
import { closeSync, constants, fstatSync, linkSync, openSync, readSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { processLife, processStartTime, sleep } from '../infra/process-utils';
import { abortError } from './tool';

export interface BuildLock {
  release(): void;
}

export interface LockHolderInfo {
  pid: number;
  startTime?: string;
}

const MAX_LOCK_BYTES = 256;

/** The holder of a lock's text, or undefined when it is not a lock this code writes. */
function parse(text: string): LockHolderInfo | undefined {
  const [first, ...rest] = text.split('\n');
  if (!first || !/^\d+$/.test(first)) return undefined;
  const start = rest.find((l) => l.startsWith('start='))?.slice(6).trim();
  return { pid: Number(first), startTime: start && /^\d+$/.test(start) ? start : undefined };
}

function myContent(): string {
  return `${process.pid}\nstart=${processStartTime('self') ?? ''}\n${randomBytes(6).toString('hex')}\n`;
}

function unlinkQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err; // gone already: what we wanted
  }
}

/** Creates the lock with its content in one step; false when one exists. */
function create(file: string, content: string): boolean {
  const aside = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.new`;
  writeFileSync(aside, content, { mode: 0o644, flag: 'wx' });
  try {
    linkSync(aside, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    unlinkQuietly(aside);
  }
}

/** The lock's text, undefined when there is none; never follows a link or blocks on a FIFO. */
function read(file: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw new Error(`the image build lock ${file} is a symbolic link: remove it`);
    throw err;
  }
  try {
    if (!fstatSync(fd).isFile()) throw new Error(`the image build lock ${file} is not a regular file: remove it`);
    const buf = Buffer.alloc(MAX_LOCK_BYTES);
    return buf.subarray(0, readSync(fd, buf, 0, MAX_LOCK_BYTES, 0)).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/** Moves a stale lock aside and removes it; a fresh one created meanwhile is put back. */
function takeOver(file: string, stale: string): void {
  const aside = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.stale`;
  try {
    renameSync(file, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // someone else removed it
    throw err;
  }
  if (read(aside) !== stale) {
    try {
      linkSync(aside, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err; // a third process holds it now
    }
  }
  unlinkQuietly(aside);
}

function handle(file: string, content: string): BuildLock {
  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      if (read(file) === content) unlinkQuietly(file);
    },
  };
}

/**
 * One attempt: the lock, or who holds it (alive or exiting). A lock of a process that is gone or dead,
 * or a file that is not a lock (seen twice), is taken over.
 */
export function tryBuildLock(file: string): { lock: BuildLock } | { holder: LockHolderInfo } {
  const content = myContent();
  let garbageSeen = false;
  for (let round = 0; round < 50; round++) {
    if (create(file, content)) return { lock: handle(file, content) };
    const seen = read(file);
    if (seen === undefined) continue; // removed meanwhile
    const holder = parse(seen);
    if (!holder && !garbageSeen) {
      garbageSeen = true; // written by an older version between create and write? look again once
      continue;
    }
    const life = holder ? processLife(holder.pid, holder.startTime) : 'gone';
    if (holder && (life === 'alive' || life === 'exiting')) return { holder };
    takeOver(file, seen);
  }
  throw new Error(`could not take the image build lock ${file}`);
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
