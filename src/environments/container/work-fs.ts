// The disk of one container environment: a sparse file on the host holding an ext4 filesystem,
// loop-mounted under the environment's state dir. The test's /work (and the control dir) live on
// it, so the kernel enforces the pool's diskMb: a write past it fails with ENOSPC ("No space left
// on device") inside the sandbox, and the host never holds more than diskMb for the environment.
//
// Measured on the 2-core dev host (ext4 `/`, no project quotas), see the issue notes:
//   mkfs.ext4 (lazy inode tables) of a 200 MB–2 GB sparse file 6–7 ms, 10 GB 15 ms; mount 9 ms,
//   umount of an empty fs 13 ms. After a test wrote 1 GB + 100,000 files: umount 0.8 s (dirty
//   pages written back), unlink + mkfs + mount 0.2 s — against `rm -rf` 1.2 s on a plain dir.
//   A size-capped tmpfs would be as quick, but it holds the test's disk in RAM (counted in the
//   memory cgroup): a 2 GB disk would need a 2 GB memory limit.
// Reset therefore throws the filesystem away and makes a fresh one; a tree deeper than PATH_MAX
// inside it disappears with it. Trees outside a mount are removed by `rm -rf --one-file-system`
// run from the parent directory (GNU rm walks with openat: no long paths, ~2 MB of memory for
// 1,000,000 files, 21 s).
//
// Everything here needs root (mount); a driver that does not run as root uses plain directories
// (no disk limit) and says so once in its log.

import { spawn } from 'node:child_process';
import { constants as fsConstants, promises as fs, readdirSync, rmSync, statfsSync } from 'node:fs';
import path from 'node:path';

/** Tools from e2fsprogs and util-linux (Debian: both Essential/Priority required). */
const TOOLS = {
  mkfs: ['/usr/sbin/mkfs.ext4', '/sbin/mkfs.ext4'],
  mount: ['/usr/bin/mount', '/bin/mount'],
  umount: ['/usr/bin/umount', '/bin/umount'],
  rm: ['/usr/bin/rm', '/bin/rm'],
  fstrim: ['/usr/sbin/fstrim', '/sbin/fstrim'],
  fallocate: ['/usr/bin/fallocate', '/bin/fallocate'],
} as const;

const resolved = new Map<string, string>();

export async function tool(name: keyof typeof TOOLS): Promise<string> {
  const known = resolved.get(name);
  if (known) return known;
  for (const candidate of TOOLS[name]) {
    try {
      await fs.access(candidate, fsConstants.X_OK);
      resolved.set(name, candidate);
      return candidate;
    } catch {
      // try the next location
    }
  }
  throw new Error(`${path.basename(TOOLS[name][0])} not found (${TOOLS[name].join(', ')}): install the Debian package ${name === 'mkfs' ? 'e2fsprogs' : 'util-linux / coreutils'}`);
}

/** Runs a tool with no shell and an empty environment; rejects with its stderr on failure. */
export function exec(cmd: string, args: string[], opts: { cwd?: string; timeoutMs?: number; fd3?: number } = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const stdio: ('ignore' | 'pipe' | number)[] = ['ignore', 'ignore', 'pipe', ...(opts.fd3 === undefined ? [] : [opts.fd3])];
    const child = spawn(cmd, args, { cwd: opts.cwd ?? '/', env: {}, stdio, timeout: opts.timeoutMs, killSignal: 'SIGKILL' });
    let err = '';
    child.stderr!.on('data', (c: Buffer) => {
      if (err.length < 4096) err += c.toString('utf8');
    });
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${path.basename(cmd)} ${args.join(' ')}: ${signal ? `killed by ${signal}` : `exit ${code}`}${err.trim() ? `: ${err.trim().split('\n').slice(-3).join(' / ')}` : ''}`));
    });
  });
}

export interface WorkFs {
  /** The sparse backing file (root-owned 0600). */
  image: string;
  /** Where it is mounted: the environment's work dir. */
  mountPoint: string;
  sizeMb: number;
  /** A size-capped tmpfs for the control dir (status, service logs): its pages count in the run's memory cgroup. */
  ctlMountPoint: string;
  ctlSizeMb: number;
}

/** Size of the control-dir tmpfs: the runner's markers and the services' logs. */
export const CTL_FS_MB = 64;

/**
 * Makes a fresh filesystem of `sizeMb` in `image` (replacing any file there) and mounts it at
 * `mountPoint` (created when missing), and a fresh tmpfs at `ctlMountPoint`. Both roots are
 * root-owned 0711: callers chown the work dir and create the sandbox-owned control dir inside.
 * Bytes per inode 8192: 100,000 small files fit in 1 GB.
 */
export async function createWorkFs(fsSpec: WorkFs): Promise<void> {
  const { image, mountPoint, sizeMb } = fsSpec;
  await fs.mkdir(fsSpec.ctlMountPoint, { recursive: true, mode: 0o711 });
  await exec(await tool('mount'), ['-t', 'tmpfs', '-o', `size=${fsSpec.ctlSizeMb}m,mode=0711,nosuid,nodev,noexec`, 'orch-ctl', fsSpec.ctlMountPoint]);
  await fs.rm(image, { force: true });
  const handle = await fs.open(image, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, 0o600);
  try {
    await handle.truncate(sizeMb * 1024 * 1024);
  } finally {
    await handle.close();
  }
  await exec(await tool('mkfs'), [
    '-q', '-F', '-t', 'ext4', '-b', '4096', '-m', '0', '-i', '8192',
    '-E', 'lazy_itable_init=1,lazy_journal_init=1,nodiscard,root_owner=0:0',
    image,
  ]);
  await fs.mkdir(mountPoint, { recursive: true, mode: 0o711 });
  // noinit_itable: no background zeroing of inode tables (they read as zeros from the sparse file).
  await exec(await tool('mount'), ['-t', 'ext4', '-o', 'loop,nosuid,nodev,noatime,noinit_itable', image, mountPoint]);
  await fs.chmod(mountPoint, 0o711);
  await fs.rmdir(path.join(mountPoint, 'lost+found')); // the test's /work starts empty
}

/**
 * Unmounts the filesystem (retrying while it is busy for up to ~2 s) and deletes its backing file:
 * everything the test wrote is gone at once, however many files or however deep. Throws when the
 * mount cannot be removed (an environment fault: something still holds it).
 */
export async function destroyWorkFs(fsSpec: WorkFs): Promise<void> {
  await unmount(fsSpec.ctlMountPoint);
  await unmount(fsSpec.mountPoint);
  await fs.rm(fsSpec.image, { force: true });
}

/** Unmounts `mountPoint` if something is mounted there; busy: retried, then an error. */
export async function unmount(mountPoint: string): Promise<void> {
  for (let i = 0; ; i++) {
    if (!(await isMountPoint(mountPoint))) return;
    try {
      await exec(await tool('umount'), [mountPoint], { timeoutMs: 120_000 });
      return;
    } catch (err) {
      if (i >= 10) throw new Error(`cannot unmount ${mountPoint}: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** Mount points at or below `dir` (from /proc/self/mountinfo), deepest first. */
export async function mountsBelow(dir: string): Promise<string[]> {
  const root = path.resolve(dir);
  const text = await fs.readFile('/proc/self/mountinfo', 'utf8');
  const found: string[] = [];
  for (const line of text.split('\n')) {
    const field = line.split(' ')[4];
    if (!field) continue;
    const mp = field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (mp === root || mp.startsWith(root + '/')) found.push(mp);
  }
  return [...new Set(found)].sort((a, b) => b.length - a.length);
}

export async function isMountPoint(dir: string): Promise<boolean> {
  return (await mountsBelow(dir)).includes(path.resolve(dir));
}

/**
 * Removes a directory tree without ever building a long path and in bounded memory: GNU
 * `rm -rf --one-file-system` run from the parent directory (it walks with openat/unlinkat, so a
 * tree deeper than PATH_MAX goes too, and it never crosses into a mounted filesystem). Throws when
 * anything is left.
 */
export async function removeTree(dir: string): Promise<void> {
  const abs = path.resolve(dir);
  const parent = path.dirname(abs);
  const name = path.basename(abs);
  if (abs === parent || name === '' || name === '.' || name === '..') throw new Error(`refusing to remove ${abs}`);
  try {
    await fs.lstat(abs);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  let failure = '';
  try {
    await exec(await tool('rm'), ['-rf', '--one-file-system', '--', name], { cwd: parent });
  } catch (err) {
    failure = `: ${(err as Error).message}`;
  }
  try {
    await fs.lstat(abs);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  throw new Error(`cannot remove ${abs}${failure}`);
}

/** Below these a reset empties the filesystem in place (~1 ms) instead of making a new one (~40 ms). */
const IN_PLACE_MAX_INODES = 256;
const IN_PLACE_MAX_BYTES = 64 * 1024 * 1024;
/** Freed bytes from which an in-place reset hands the blocks back to the host. */
const TRIM_MIN_BYTES = 1024 * 1024;

/**
 * After a small test: empties the work fs and the control dir in place (and discards the freed
 * blocks, so the backing file shrinks back) and returns true. Returns
 * false (nothing to trust: make a fresh filesystem) when the test left many files or bytes, or
 * when anything cannot be removed in place (a tree deeper than PATH_MAX, say).
 */
export async function clearInPlace(fsSpec: WorkFs, ctlDir: string, log: (what: string, err: Error) => void): Promise<boolean> {
  // Synchronous up to the trim: at most IN_PLACE_MAX_INODES small entries, metadata calls that wait
  // for no disk write (host-files.ts says why), where ~10 awaited calls cost more than the work.
  const s = statfsSync(fsSpec.mountPoint);
  const usedInodes = s.files - s.ffree;
  const usedBytes = (s.blocks - s.bfree) * s.bsize;
  if (usedInodes > IN_PLACE_MAX_INODES || usedBytes > IN_PLACE_MAX_BYTES + s.blocks * s.bsize * 0.05) return false;
  try {
    for (const name of readdirSync(fsSpec.mountPoint)) {
      rmSync(path.join(fsSpec.mountPoint, name), { recursive: true, force: true });
    }
    rmSync(ctlDir, { recursive: true, force: true });
    // The blocks freed stay allocated in the backing file until they are discarded: give them back
    // to the host (FITRIM; the loop device punches holes). FITRIM skips blocks freed in a journal
    // transaction not yet committed: the fsync of the root dir (changed by the removals) commits
    // it. ~3 ms, so only when there is something to give back.
    const after = statfsSync(fsSpec.mountPoint);
    if ((after.bfree - s.bfree) * s.bsize >= TRIM_MIN_BYTES) {
      const root = await fs.open(fsSpec.mountPoint, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY | fsConstants.O_NOFOLLOW);
      try {
        await root.sync();
      } finally {
        await root.close();
      }
      await exec(await tool('fstrim'), [fsSpec.mountPoint]);
    }
    return true;
  } catch (err) {
    log('cannot empty the disk in place: making a new one', err as Error);
    return false;
  }
}

/**
 * True when the filesystem is (nearly) full: less than max(2 MiB, 1%) of its blocks or no inode
 * left. ext4 refuses a large write with ENOSPC while a few hundred KB remain (delayed-allocation
 * reservations), so "zero left" is not the test.
 */
export async function isNearlyFull(mountPoint: string): Promise<boolean> {
  const s = statfsSync(mountPoint); // one call that waits for nothing (host-files.ts)
  const total = s.blocks * s.bsize;
  const free = s.bavail * s.bsize;
  return free < Math.max(2 * 1024 * 1024, total * 0.01) || s.ffree === 0;
}
