// The image store on disk, shared by every process of the machine:
//
//   IMAGE_DIR/<name>/<hex>/{rootfs/, image.json}   a complete version (renamed into place whole)
//   IMAGE_DIR/<name>/current -> <hex>              the version built last (replaced by rename)
//   IMAGE_DIR/<name>/<hex>.users/<pid>.<start>.<holder>   who uses a version now (markers)
//   IMAGE_DIR/<name>/.build.lock                   one builder per name (build-lock.ts)
//   IMAGE_DIR/<name>/.build-<hex12>.<pid>.<start>.<random>/   a build in progress
//   IMAGE_DIR/<name>/{rootfs, image.json}          the first layout (scripts/build-image.sh): real files
//                                                  left as they are (older versions still read them), or
//                                                  links to current/… made for those older readers
//
// Versions are immutable: a digest names one content. Everything is root's and world-readable.

import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, promises as fs, readdirSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { IMAGE_NAME_RE } from '../config/images';
import { processLife, processStartTime } from '../infra/process-utils';
import type { SourceIdentity } from './digest';

export const CURRENT = 'current';
export const LOCK_FILE = '.build.lock';
const HEX_RE = /^[0-9a-f]{64}$/;
const DIGEST_RE = /^sha256:([0-9a-f]{64})$/;

/** image.json of a version. */
export interface ImageManifest {
  name: string;
  /** "sha256:<hex>", the version's name. */
  digest: string;
  /** The definition's `from`, as configured. */
  from: string;
  source: SourceIdentity;
  packages: string[];
  setup: string | null;
  /** What every test of the image sees: the definition's env over the image's own (OCI Env, parent's). */
  env: Record<string, string>;
  sizeBytes: number;
  /** ISO 8601. */
  builtAt: string;
  buildSeconds: number;
  /** The builder's BUILD_FORMAT. */
  format: number;
  /** /etc/debian_version of the root filesystem, when it has one. */
  debianVersion?: string;
}

/** A complete version, ready to be bound as a sandbox's root. JSON-safe. */
export interface ResolvedImage {
  name: string;
  digest: string;
  /** Absolute path of the root filesystem (read-only to sandboxes). */
  rootfs: string;
  env: Record<string, string>;
  sizeBytes: number;
  /** ISO 8601. */
  builtAt: string;
}

export interface VersionInfo extends ResolvedImage {
  current: boolean;
  /** Holders alive now (acquireVersion). */
  users: string[];
}

export function checkName(name: string): void {
  if (!IMAGE_NAME_RE.test(name)) throw new Error(`invalid image name "${name}"`);
}

export function hexOf(digest: string): string {
  const m = DIGEST_RE.exec(digest);
  if (!m) throw new Error(`invalid image digest "${digest}" (sha256:<64 hex digits>)`);
  return m[1];
}

export function nameDir(imageDir: string, name: string): string {
  checkName(name);
  return path.join(imageDir, name);
}

export function versionDir(imageDir: string, name: string, digest: string): string {
  return path.join(nameDir(imageDir, name), hexOf(digest));
}

const notFound = (err: unknown) => ['ENOENT', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '');

/** The manifest of a version directory, or null when it is not a complete version. */
async function readManifest(dir: string): Promise<ImageManifest | null> {
  let text: string;
  try {
    text = await fs.readFile(path.join(dir, 'image.json'), 'utf8');
  } catch (err) {
    if (notFound(err)) return null; // the expected answer: no such version
    throw err;
  }
  try {
    const m = JSON.parse(text) as ImageManifest;
    if (typeof m.digest !== 'string' || typeof m.name !== 'string') return null;
    return m;
  } catch {
    return null; // not a manifest this code wrote: not a complete version
  }
}

function resolvedFrom(dir: string, m: ImageManifest): ResolvedImage {
  return { name: m.name, digest: m.digest, rootfs: path.join(dir, 'rootfs'), env: { ...(m.env ?? {}) }, sizeBytes: m.sizeBytes ?? 0, builtAt: m.builtAt };
}

/** A given version, complete (its manifest names it and its rootfs is there), or null. */
export async function resolveVersion(imageDir: string, name: string, digest: string): Promise<ResolvedImage | null> {
  const dir = versionDir(imageDir, name, digest);
  const m = await readManifest(dir);
  if (!m || m.digest !== digest || m.name !== name) return null;
  try {
    if (!(await fs.lstat(path.join(dir, 'rootfs'))).isDirectory()) return null;
  } catch (err) {
    if (notFound(err)) return null; // the expected answer: incomplete
    throw err;
  }
  return resolvedFrom(dir, m);
}

/** The hex digest `current` names, or null. */
export async function currentHex(imageDir: string, name: string): Promise<string | null> {
  try {
    const target = await fs.readlink(path.join(nameDir(imageDir, name), CURRENT));
    return HEX_RE.test(target) ? target : null;
  } catch (err) {
    if (notFound(err) || (err as NodeJS.ErrnoException).code === 'EINVAL') return null; // none, or not a link of ours
    throw err;
  }
}

/** The current complete version of `name`, or null (never built in this layout). */
export async function resolveImage(imageDir: string, name: string): Promise<ResolvedImage | null> {
  const hex = await currentHex(imageDir, name);
  return hex ? resolveVersion(imageDir, name, `sha256:${hex}`) : null;
}

/** Every complete version of `name`, newest first. */
export async function listVersions(imageDir: string, name: string): Promise<VersionInfo[]> {
  const dir = nameDir(imageDir, name);
  let entries: string[];
  try {
    entries = await fs.readdir(dir);
  } catch (err) {
    if (notFound(err)) return []; // never built
    throw err;
  }
  const current = await currentHex(imageDir, name);
  const out: VersionInfo[] = [];
  for (const hex of entries.filter((e) => HEX_RE.test(e))) {
    const v = await resolveVersion(imageDir, name, `sha256:${hex}`);
    if (v) out.push({ ...v, current: hex === current, users: liveUsers(path.join(dir, `${hex}.users`)) });
  }
  return out.sort((a, b) => (a.builtAt < b.builtAt ? 1 : a.builtAt > b.builtAt ? -1 : 0));
}

/** Makes `hex` the current version: a new link renamed over the old one (atomic). */
export async function setCurrent(imageDir: string, name: string, digest: string): Promise<void> {
  const dir = nameDir(imageDir, name);
  const hex = hexOf(digest);
  const tmp = path.join(dir, `.current.${process.pid}.${randomBytes(4).toString('hex')}`);
  await fs.symlink(hex, tmp);
  try {
    await fs.rename(tmp, path.join(dir, CURRENT));
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await ensureLegacyLinks(dir);
}

/**
 * Older readers (scripts/build-image.sh, drivers of the first layout) look for <name>/rootfs and
 * <name>/image.json: where neither exists, links to the current version's make them find it (and keep
 * the old script from taking the directory for a broken image). A real first-layout image is left.
 */
async function ensureLegacyLinks(dir: string): Promise<void> {
  for (const entry of ['rootfs', 'image.json']) {
    try {
      await fs.lstat(path.join(dir, entry));
    } catch (err) {
      if (!notFound(err)) throw err;
      await fs.symlink(`${CURRENT}/${entry}`, path.join(dir, entry)).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'EEXIST') throw e; // made by another process meanwhile: as good
      });
    }
  }
}

/** The first layout's image at <name>/{rootfs,image.json} (real, not our links), or null. */
export async function legacyImage(imageDir: string, name: string): Promise<{ rootfs: string; manifest: Record<string, unknown> } | null> {
  const dir = nameDir(imageDir, name);
  try {
    const st = await fs.lstat(path.join(dir, 'rootfs'));
    if (!st.isDirectory()) return null;
    const manifest = JSON.parse(await fs.readFile(path.join(dir, 'image.json'), 'utf8')) as Record<string, unknown>;
    return manifest && typeof manifest === 'object' ? { rootfs: path.join(dir, 'rootfs'), manifest } : null;
  } catch (err) {
    if (notFound(err) || err instanceof SyntaxError) return null; // none, or not a first-layout image
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Versions in use

const HOLDER_RE = /[^A-Za-z0-9_-]/g;

interface Marker {
  pid: number;
  startTime: string;
  holder: string;
}

function parseMarker(file: string): Marker | null {
  const m = /^(\d+)\.(\d*)\.(.+)\.[0-9a-f]{6}$/.exec(file);
  return m ? { pid: Number(m[1]), startTime: m[2], holder: m[3] } : null;
}

function markerAlive(m: Marker): boolean {
  const life = processLife(m.pid, m.startTime || undefined);
  return life === 'alive' || life === 'exiting';
}

/** Holders of live markers in a users dir; markers of dead processes do not count. */
export function liveUsers(usersDir: string): string[] {
  let files: string[];
  try {
    files = readdirSync(usersDir);
  } catch (err) {
    if (notFound(err)) return []; // nobody ever used it
    throw err;
  }
  return files.flatMap((f) => {
    const m = parseMarker(f);
    return m && markerAlive(m) ? [m.holder] : [];
  });
}

/** Removes the markers of processes that are gone; returns how many. */
export function removeDeadMarkers(usersDir: string): number {
  let files: string[];
  try {
    files = readdirSync(usersDir);
  } catch (err) {
    if (notFound(err)) return 0;
    throw err;
  }
  let n = 0;
  for (const f of files) {
    const m = parseMarker(f);
    if (m && markerAlive(m)) continue;
    try {
      unlinkSync(path.join(usersDir, f));
      n++;
    } catch (err) {
      if (!notFound(err)) throw err; // removed meanwhile: as good
    }
  }
  return n;
}

/**
 * Marks version `digest` of `name` as used by `holderId` (a test id, an environment id) of this
 * process, so collectGarbage keeps it; returns the release function (idempotent, synchronous). The
 * marker of a process that dies counts no more. Throws when the version does not exist (it was
 * removed, or never built) or the marker cannot be written (IMAGE_DIR not writable by this user).
 */
export async function acquireVersion(imageDir: string, name: string, digest: string, holderId: string): Promise<() => void> {
  const dir = versionDir(imageDir, name, digest);
  const usersDir = `${dir}.users`;
  const holder = holderId.replace(HOLDER_RE, '_').slice(0, 100) || 'holder';
  const marker = path.join(usersDir, `${process.pid}.${processStartTime('self') ?? ''}.${holder}.${randomBytes(3).toString('hex')}`);
  try {
    mkdirSync(usersDir, { mode: 0o755 });
    chmodSync(usersDir, 0o755); // whatever the umask: anyone may list who uses a version
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err; // made by another user of it: as good
  }
  writeFileSync(marker, '', { flag: 'wx', mode: 0o644 });
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    try {
      unlinkSync(marker);
    } catch (err) {
      if (!notFound(err)) throw err; // removed already (a garbage collection of a dead holder): as good
    }
  };
  // The marker is there before the check: a collection that has not yet seen it finds it when it
  // looks again after moving the version aside, and puts the version back.
  if (!(await resolveVersion(imageDir, name, digest))) {
    release();
    throw new Error(`image "${name}" has no version ${digest} (removed, or never built here)`);
  }
  return release;
}
