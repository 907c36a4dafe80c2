// What the builder does on the host to a new root filesystem, as root. The content is hostile (an OCI
// image from anywhere, a setup script): no host-side step follows a link inside it — paths are
// resolved as the sandbox would see them (resolveInRoot), entries are lstat'ed before anything is
// changed, and what would be a hole on the host is taken out (sanitize).

import { promises as fs, type Stats } from 'node:fs';
import path from 'node:path';

/** Directories every sandbox binds or mounts over: they must exist in a read-only root. */
export const BIND_TARGETS: { name: string; mode: number }[] = [
  { name: 'work', mode: 0o755 },
  { name: 'tmp', mode: 0o1777 },
  { name: 'proc', mode: 0o755 },
  { name: 'dev', mode: 0o755 },
  { name: 'run', mode: 0o755 },
];

const notFound = (err: unknown) => ['ENOENT', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '');

/**
 * The host path `p` (absolute inside the image) names, following links as they would be followed
 * inside the image (an absolute link is relative to `root`, ".." stops at it); null when it does not
 * exist or the links go round more than 40 times.
 */
export async function resolveInRoot(root: string, p: string): Promise<string | null> {
  let pending = p.split('/').filter(Boolean);
  const done: string[] = [];
  let hops = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      done.pop();
      continue;
    }
    const host = path.join(root, ...done, part);
    let st: Stats;
    try {
      st = await fs.lstat(host);
    } catch (err) {
      if (notFound(err)) return null;
      throw err;
    }
    if (st.isSymbolicLink()) {
      if (++hops > 40) return null;
      const target = await fs.readlink(host);
      if (target.startsWith('/')) done.length = 0;
      pending = [...target.split('/').filter(Boolean), ...pending];
      continue;
    }
    if (pending.length > 0 && !st.isDirectory()) return null;
    done.push(part);
  }
  return path.join(root, ...done);
}

/** Is `p` (inside the image) an executable regular file? */
export async function isExecutableInRoot(root: string, p: string): Promise<boolean> {
  const host = await resolveInRoot(root, p);
  if (!host) return false;
  const st = await fs.lstat(host);
  return st.isFile() && (st.mode & 0o111) !== 0;
}

/**
 * Makes each top-level bind target a real directory with its mode (a link, file or device in its place
 * is removed first: bwrap would otherwise mount through it).
 */
export async function ensureBindTargets(rootfs: string): Promise<void> {
  await fs.chmod(rootfs, 0o755);
  for (const { name, mode } of BIND_TARGETS) {
    const p = path.join(rootfs, name);
    let st: Stats | null = null;
    try {
      st = await fs.lstat(p);
    } catch (err) {
      if (!notFound(err)) throw err;
    }
    if (st && !st.isDirectory()) {
      await fs.rm(p, { force: true });
      st = null;
    }
    if (!st) await fs.mkdir(p);
    // a directory we just lstat'ed (not a link): chmod/chown act on it
    await fs.chown(p, 0, 0);
    await fs.chmod(p, mode);
  }
}

export interface SanitizeReport {
  devices: number;
  setuid: number;
  worldWritable: number;
}

/**
 * Takes out of a root filesystem what would give other host users a way in through the shared,
 * world-readable cache: device nodes (bwrap mounts the image nodev and gives each sandbox its own
 * /dev, so none is of use inside), set-user-ID/set-group-ID bits and file capabilities (a sandbox runs
 * with no_new_privs: they never work inside) and write permission for others (the root is read-only
 * inside anyway). Every regular file is chowned to its own owner: the kernel then drops its
 * security.capability attribute and its set-ID bits. Never follows a link.
 */
export async function sanitize(rootfs: string): Promise<SanitizeReport> {
  const report: SanitizeReport = { devices: 0, setuid: 0, worldWritable: 0 };
  const walk = async (dir: string): Promise<void> => {
    const entries = await fs.readdir(dir, { withFileTypes: true });
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (e.isSymbolicLink()) continue;
      if (e.isBlockDevice() || e.isCharacterDevice()) {
        await fs.rm(p, { force: true });
        report.devices++;
        continue;
      }
      const st = await fs.lstat(p);
      if (st.isFile()) {
        await fs.lchown(p, st.uid, st.gid); // drops security.capability and the set-ID bits
        if (st.mode & 0o6000) report.setuid++;
      }
      let mode = st.mode & 0o7777;
      if (st.isFile()) mode &= ~0o6000;
      const bindTarget = dir === rootfs && BIND_TARGETS.some((t) => t.name === e.name); // its mode is set by ensureBindTargets
      if (mode & 0o002 && !bindTarget) {
        mode &= ~0o002;
        report.worldWritable++;
      }
      if (mode !== (st.mode & 0o7777) && !st.isSymbolicLink()) await fs.chmod(p, mode);
      if (st.isDirectory()) await walk(p);
    }
  };
  await walk(rootfs);
  return report;
}

/**
 * Puts a regular file at etc/resolv.conf for the build sandbox to bind the host's over (apt needs DNS);
 * returns how to put back what was there. A missing /etc is made.
 */
export async function prepareResolvConf(rootfs: string): Promise<() => Promise<void>> {
  const etc = path.join(rootfs, 'etc');
  let st: Stats | null = null;
  try {
    st = await fs.lstat(etc);
  } catch (err) {
    if (!notFound(err)) throw err;
  }
  if (st && !st.isDirectory()) throw new Error('/etc of the image is not a directory');
  if (!st) await fs.mkdir(etc, { mode: 0o755 });
  const file = path.join(etc, 'resolv.conf');
  const aside = path.join(etc, '.resolv.conf.image-build');
  let existing: Stats | null = null;
  try {
    existing = await fs.lstat(file);
  } catch (err) {
    if (!notFound(err)) throw err;
  }
  if (existing?.isFile()) return async () => undefined; // bound over, left as it is
  if (existing) await fs.rename(file, aside); // a link (to ../run/…): set aside, not followed
  await fs.writeFile(file, '', { flag: 'wx', mode: 0o644 });
  return async () => {
    await fs.rm(file, { force: true });
    if (existing) await fs.rename(aside, file);
  };
}

/** /etc/debian_version of the image, if it has one (read inside the image's view). */
export async function debianVersionOf(rootfs: string): Promise<string | undefined> {
  const p = await resolveInRoot(rootfs, '/etc/debian_version');
  if (!p) return undefined;
  const st = await fs.lstat(p);
  if (!st.isFile() || st.size > 256) return undefined;
  const v = (await fs.readFile(p, 'utf8')).trim();
  return /^[A-Za-z0-9._/+-]{1,64}$/.test(v) ? v : undefined;
}

/** A directory of the image reached without any link on the way (host path), or null. */
async function realDirIn(rootfs: string, rel: string): Promise<string | null> {
  let p = rootfs;
  for (const part of rel.split('/').filter(Boolean)) {
    p = path.join(p, part);
    try {
      if (!(await fs.lstat(p)).isDirectory()) return null;
    } catch (err) {
      if (notFound(err)) return null;
      throw err;
    }
  }
  return p;
}

/** Removes what debootstrap leaves of apt's downloads: the .deb files and the package lists. */
export async function cleanAptCaches(rootfs: string): Promise<void> {
  for (const [rel, keep] of [['var/cache/apt/archives', (f: string) => !f.endsWith('.deb')], ['var/lib/apt/lists', (f: string) => f === 'partial' || f === 'lock']] as const) {
    const dir = await realDirIn(rootfs, rel);
    if (!dir) continue;
    for (const f of await fs.readdir(dir)) if (!keep(f)) await fs.rm(path.join(dir, f), { recursive: true, force: true });
  }
}
