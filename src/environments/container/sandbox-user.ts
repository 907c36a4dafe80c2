// The unprivileged host user sandboxes run as when the orchestrator runs as root.
//
// bwrap started by root with `--unshare-user --uid 65534` maps the sandbox's uid 65534 to host uid 0:
// files it writes are root's and a kernel escape would be root. So a root driver starts bwrap as an
// unprivileged host user instead (default 65534 `nobody`/`nogroup`): the join wrapper (still root)
// writes its pid to the run's cgroup.procs files, then execs
//   setpriv --reuid=U --regid=G --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs bwrap …
// (util-linux ≥ 2.33) and bwrap creates the user namespace unprivileged: inside, uid 65534 maps to
// host uid U. Every bind source (image rootfs, work and control dirs) must then be reachable by U:
// bwrap resolves them with U's permissions.

import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';

export const DEFAULT_SANDBOX_UID = 65534;
export const DEFAULT_SANDBOX_GID = 65534;
export { DEFAULT_SETPRIV_PATH } from '../../config/container-driver';

/** Host credentials bwrap is started with; null: bwrap runs as the driver's own user. */
export interface SandboxUser {
  uid: number;
  gid: number;
}

function validId(n: number, what: string): number {
  if (!Number.isInteger(n) || n <= 0 || n >= 2 ** 32 - 1) throw new Error(`ContainerDriver: ${what} must be a positive integer (not root), got ${n}`);
  return n;
}

/** The user to drop to: only when the driver runs as root. */
export function resolveSandboxUser(
  options: { sandboxUid?: number; sandboxGid?: number },
  currentUid: number | undefined = process.getuid?.(),
): SandboxUser | null {
  const uid = validId(options.sandboxUid ?? DEFAULT_SANDBOX_UID, 'sandboxUid');
  const gid = validId(options.sandboxGid ?? DEFAULT_SANDBOX_GID, 'sandboxGid');
  if (currentUid !== 0) return null;
  return { uid, gid };
}

/** The argv prefix that execs the rest of the command line as `user`, without any capability. */
export function setprivArgs(setprivPath: string, user: SandboxUser): string[] {
  return [
    setprivPath,
    `--reuid=${user.uid}`,
    `--regid=${user.gid}`,
    '--clear-groups',
    '--inh-caps=-all',
    '--bounding-set=-all',
    '--no-new-privs',
    '--',
  ];
}

/**
 * Checks `user` can search (traverse) every directory in `dirs`, by asking the kernel: `[ -x DIR ]`
 * run as that user. Returns the first one it cannot reach, with the first ancestor lacking search
 * permission for it (a hint for the error message), or null when all are reachable.
 */
export async function findUntraversable(
  setprivPath: string,
  user: SandboxUser,
  dirs: string[],
): Promise<{ dir: string; blocker: string | null } | null> {
  const program = 'for p; do [ -d "$p" ] && [ -x "$p" ] || { printf "%s" "$p"; exit 1; }; done';
  const result = await new Promise<{ code: number | null; stdout: string; error?: Error }>((resolve) => {
    execFile(
      setprivPath,
      [...setprivArgs(setprivPath, user).slice(1), '/bin/sh', '-c', program, 'sh', ...dirs],
      { env: {}, cwd: '/', timeout: 10_000 },
      (error, stdout) => {
        const code = error ? (typeof (error as NodeJS.ErrnoException).code === 'number' ? ((error as { code: number }).code) : null) : 0;
        resolve({ code, stdout: String(stdout), error: error && code === null ? error : undefined });
      },
    );
  });
  if (result.error) throw new Error(`cannot run ${setprivPath} to check directory permissions: ${result.error.message}`);
  if (result.code === 0) return null;
  const dir = result.stdout || dirs[0];
  return { dir, blocker: await firstBlockingAncestor(dir, user) };
}

/** `/`, then each directory on the way down to `dir`, `dir` last. */
function ancestorsOf(dir: string): string[] {
  const parts = path.resolve(dir).split(path.sep).filter(Boolean);
  return [path.sep, ...parts.map((_, i) => path.join(path.sep, ...parts.slice(0, i + 1)))];
}

/** The first directory on the way to `dir` whose mode bits deny search to `user` (best effort). */
async function firstBlockingAncestor(dir: string, user: SandboxUser): Promise<string | null> {
  for (const current of ancestorsOf(dir)) {
    let st;
    try {
      st = await fs.stat(current);
    } catch {
      return current;
    }
    const bit = st.uid === user.uid ? 0o100 : st.gid === user.gid ? 0o010 : 0o001;
    if (!st.isDirectory() || (st.mode & bit) === 0) return current;
  }
  return null;
}

/**
 * Creates `dir` (and missing parents) for root's use as the parent of bind sources: every
 * directory created is 0711 (reachable, not listable); every existing one on the way must be a
 * real directory owned by root (or `ownerUid`) and not writable by others unless sticky (as /tmp),
 * so no other user can swap a component for a link while root works below it.
 */
export async function prepareSecureDir(dir: string, ownerUid = 0): Promise<void> {
  const parts = path.resolve(dir).split(path.sep).filter(Boolean);
  for (let i = 0; i <= parts.length; i++) {
    const current = path.join(path.sep, ...parts.slice(0, i));
    let st;
    try {
      st = await fs.lstat(current);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      try {
        await fs.mkdir(current, { mode: 0o711 });
      } catch (mkErr) {
        if ((mkErr as NodeJS.ErrnoException).code !== 'EEXIST') throw mkErr;
      }
      st = await fs.lstat(current);
      if (st.isDirectory() && st.uid === ownerUid) await fs.chmod(current, 0o711); // umask may have narrowed it
    }
    if (st.isSymbolicLink()) {
      // A link owned by root in a directory only root can write (e.g. /var/run -> /run) is safe;
      // check the rest of the way from its target.
      if (st.uid !== 0 && st.uid !== ownerUid) throw new Error(`${current} is a symbolic link owned by uid ${st.uid}`);
      return prepareSecureDir(path.join(await fs.realpath(current), ...parts.slice(i + 1)), ownerUid);
    }
    if (!st.isDirectory()) throw new Error(`${current} is not a directory`);
    if (st.uid !== 0 && st.uid !== ownerUid) throw new Error(`${current} is owned by uid ${st.uid}, not root`);
    if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0) {
      throw new Error(`${current} is writable by other users (mode ${(st.mode & 0o7777).toString(8)}) and not sticky`);
    }
  }
}
