// Garbage collection of the image store: versions of the defined images that are neither current nor
// in use, and what interrupted builds left. Names that are not defined here are left alone (the
// cache is shared with other deployments, which may define them), and so is a first-layout image.

import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { ImageDefinition } from '../config/images';
import { processLife } from '../infra/process-utils';
import { tryBuildLock } from './build-lock';
import { CURRENT, LOCK_FILE, currentHex, liveUsers, nameDir, removeDeadMarkers } from './store';
import type { ImageLogger } from './tool';

export interface GcReport {
  /** What was removed: "NAME sha256:…" for a version, "NAME leftover .build-…" for the rest. */
  removed: string[];
  /** Names not collected now, and why (a build of it is running). */
  skipped: string[];
  /** Versions kept because a live process uses them. */
  inUse: string[];
}

const HEX_RE = /^[0-9a-f]{64}$/;
/** A build directory: .build-<hex12>.<pid>.<start time>.<random>. */
const BUILD_DIR_RE = /^\.build-[0-9a-f]{12}\.(\d+)\.(\d*)\.[0-9a-f]+$/;
/** A version being removed: .gc-<hex>.<pid>.<random>. */
const TRASH_RE = /^\.gc-[0-9a-f]{64}\.\d+\.[0-9a-f]+$/;

const gone = (pid: number, start: string) => {
  const life = processLife(pid, start || undefined);
  return life === 'gone' || life === 'dead';
};

/** The name of a build directory for `hex` of this process. */
export function buildDirName(hex: string, startTime: string | undefined): string {
  return `.build-${hex.slice(0, 12)}.${process.pid}.${startTime ?? ''}.${randomBytes(4).toString('hex')}`;
}

async function removeTree(p: string): Promise<void> {
  await fs.rm(p, { recursive: true, force: true, maxRetries: 2 });
}

/**
 * Removes, for each defined image, its versions that are not current and that no live process uses,
 * and the leftovers of interrupted builds; never the current version. A name being built by another
 * process is skipped (its lock is held). A version is moved aside before it is removed and checked
 * for users once more, so a process that acquired it meanwhile keeps it.
 */
export async function collectGarbage(imageDir: string, defs: readonly Pick<ImageDefinition, 'name'>[], opts: { logger?: ImageLogger } = {}): Promise<GcReport> {
  const report: GcReport = { removed: [], skipped: [], inUse: [] };
  for (const { name } of defs) {
    const dir = nameDir(imageDir, name);
    let entries: string[];
    try {
      entries = await fs.readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // never built here
      throw err;
    }
    const got = tryBuildLock(path.join(dir, LOCK_FILE));
    if (!('lock' in got)) {
      report.skipped.push(`${name}: being built by pid ${got.holder.pid}`);
      continue;
    }
    try {
      const current = await currentHex(imageDir, name);
      if (current === null && entries.includes(CURRENT)) opts.logger?.warn({ image: name }, 'image store: "current" is not a link to a version; leaving the versions');
      for (const entry of entries) {
        const full = path.join(dir, entry);
        const build = BUILD_DIR_RE.exec(entry);
        if ((build && gone(Number(build[1]), build[2])) || TRASH_RE.test(entry)) {
          await removeTree(full);
          report.removed.push(`${name} leftover ${entry}`);
          continue;
        }
        if (entry.endsWith('.users') && HEX_RE.test(entry.slice(0, -6))) {
          removeDeadMarkers(full);
          if (!entries.includes(entry.slice(0, -6)) && liveUsers(full).length === 0) await fs.rm(full, { recursive: true, force: true });
          continue;
        }
        if (!HEX_RE.test(entry) || current === null || entry === current) continue;
        const usersDir = `${full}.users`;
        if (liveUsers(usersDir).length > 0) {
          report.inUse.push(`${name} sha256:${entry}`);
          continue;
        }
        const trash = path.join(dir, `.gc-${entry}.${process.pid}.${randomBytes(4).toString('hex')}`);
        await fs.rename(full, trash);
        if (liveUsers(usersDir).length > 0) {
          await fs.rename(trash, full); // acquired between the two looks: it stays
          report.inUse.push(`${name} sha256:${entry}`);
          continue;
        }
        await removeTree(trash);
        await fs.rm(usersDir, { recursive: true, force: true });
        report.removed.push(`${name} sha256:${entry}`);
        opts.logger?.info({ image: name, digest: `sha256:${entry}` }, 'image store: removed a version nothing uses');
      }
    } finally {
      got.lock.release();
    }
  }
  return report;
}
