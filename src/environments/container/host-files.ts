// Files the container driver makes and reads on the host, where the sandbox user may have planted
// links or FIFOs: nothing here follows a final link, writes over a file or blocks on a FIFO.
//
// The *Sync forms are for a run's own few small files (the control dir on its tmpfs, the script, the
// status): a handful of metadata calls that never wait for a disk write, where each awaited call would
// cost a thread-pool round trip and two wake-ups of the driver host (a run made ~35 of them).

import { closeSync, fchmodSync, fstatSync, lchownSync, chmodSync, mkdirSync, openSync, readSync, writeSync, constants as fsConstants, promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { WarnLogger } from '../../infra/best-effort';
import { bestEffort, bestEffortSync } from '../../infra/best-effort';
import { pathExists } from '../../infra/fs-utils';
import type { SandboxUser } from './sandbox-user';
import { mountsBelow, removeTree, unmount } from './work-fs';

/** Where environments' state lives when the configuration names no stateDir. */
export function defaultStateRoot(): string {
  return path.join(os.tmpdir(), 'test-orchestrator', 'container');
}

export async function nearestExisting(dir: string): Promise<string> {
  let current = path.resolve(dir);
  while (!(await pathExists(current)) && path.dirname(current) !== current) current = path.dirname(current);
  return current;
}

/**
 * Unmounts every filesystem at or below `dir` (deepest first; several stacked on one path, such as a
 * bundle's overlay over a work disk, one by one), then removes the tree.
 */
export async function removeDirAndMounts(dir: string): Promise<void> {
  for (let round = 0; round < 8; round++) {
    const mounts = await mountsBelow(dir);
    if (!mounts.length) break;
    for (const mp of mounts) await unmount(mp);
  }
  await removeTree(dir);
}

/**
 * Creates a bind-source dir (work, control): the sandbox user's own, mode 0700, so no other local
 * user reads or writes a test's files (its parent is root's: the sandbox cannot swap it for a link).
 */
export async function makeSandboxDir(dir: string, user: SandboxUser | null): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  // lchown: never change the owner of a link's target.
  if (user) await fs.lchown(dir, user.uid, user.gid);
  await fs.chmod(dir, 0o700);
}

export function makeSandboxDirSync(dir: string, user: SandboxUser | null): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (user) lchownSync(dir, user.uid, user.gid);
  chmodSync(dir, 0o700);
}

/** Creates `file` (never through a link, never over an existing file) with `mode` whatever the umask. */
export async function writeNewFile(file: string, data: string, mode: number): Promise<void> {
  const handle = await fs.open(file, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, mode);
  try {
    await handle.writeFile(data);
    await handle.chmod(mode);
  } finally {
    await handle.close();
  }
}

export function writeNewFileSync(file: string, data: string, mode: number): void {
  const fd = openSync(file, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, mode);
  try {
    const buf = Buffer.from(data, 'utf8');
    for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off, buf.length - off);
    fchmodSync(fd, mode);
  } finally {
    closeSync(fd);
  }
}

/** readSmallRegularFile, synchronously: for the control dir (a tmpfs, or a small dir of the driver's). */
export function readSmallRegularFileSync(file: string, log: WarnLogger, maxBytes = 4096, encoding: BufferEncoding = 'utf8'): string | null {
  let fd: number | undefined;
  try {
    fd = openSync(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
    if (!fstatSync(fd).isFile()) return null;
    const buf = Buffer.alloc(maxBytes);
    let n = 0;
    for (let r = -1; r !== 0 && n < maxBytes; n += r) r = readSync(fd, buf, n, maxBytes - n, n);
    return buf.subarray(0, n).toString(encoding);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ELOOP') log.warn({ file, err: (err as Error).message }, 'reading a control file failed (ignored)');
    return null;
  } finally {
    if (fd !== undefined) {
      const f = fd;
      bestEffortSync(log, `closing ${file}`, () => closeSync(f));
    }
  }
}

/** readCappedRegularFile, synchronously (see readSmallRegularFileSync). */
export function readCappedRegularFileSync(file: string, log: WarnLogger, maxBytes: number): { text: string; tooBig: boolean } | null {
  const text = readSmallRegularFileSync(file, log, maxBytes + 1, 'latin1');
  if (text === null) return null;
  if (text.length > maxBytes) return { text: '', tooBig: true };
  return { text: Buffer.from(text, 'latin1').toString('utf8'), tooBig: false };
}

/**
 * Reads a small regular file without following a final symlink or blocking on a FIFO; null if it is
 * not one (absent, a link, a FIFO, unreadable: the sandbox user owns the dir and may leave anything).
 */
export async function readSmallRegularFile(file: string, log: WarnLogger, maxBytes = 4096, encoding: BufferEncoding = 'utf8'): Promise<string | null> {
  let handle: FileHandle | undefined;
  try {
    handle = await fs.open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
    if (!(await handle.stat()).isFile()) return null;
    const buf = Buffer.alloc(maxBytes);
    const { bytesRead } = await handle.read(buf, 0, maxBytes, 0);
    return buf.subarray(0, bytesRead).toString(encoding);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // absent (the runner never wrote it) or a link (ELOOP): not a status; anything else is worth a line
    if (code !== 'ENOENT' && code !== 'ELOOP') log.warn({ file, err: (err as Error).message }, 'reading a control file failed (ignored)');
    return null;
  } finally {
    const h = handle;
    if (h) await bestEffort(log, `closing ${file}`, () => h.close());
  }
}

/**
 * Reads a regular file of at most `maxBytes` as readSmallRegularFile does (no link followed, no FIFO
 * waited on); `tooBig` when it holds more (nothing past maxBytes + 1 is read). null: not such a file.
 */
export async function readCappedRegularFile(file: string, log: WarnLogger, maxBytes: number): Promise<{ text: string; tooBig: boolean } | null> {
  const text = await readSmallRegularFile(file, log, maxBytes + 1, 'latin1');
  if (text === null) return null;
  if (text.length > maxBytes) return { text: '', tooBig: true };
  return { text: Buffer.from(text, 'latin1').toString('utf8'), tooBig: false };
}
