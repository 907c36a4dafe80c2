// Removing groups that are left over: a run group of a crashed run, the whole tree of a dead driver
// instance, an empty group of an older version.

import { promises as fs, readdirSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { WarnLogger } from '../../infra/best-effort';
import { killGroupDir, readText } from './cgroup-files';
import { groupDirs, type CgroupLayout } from './layout';
import { RunCgroup } from './run-cgroup';

/** The child group directories of `dir` (none when it is absent from this hierarchy). Synchronous: cgroupfs (cgroup-files.ts). */
function childDirs(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name);
  } catch {
    return [];
  }
}

/** Removes leftover run groups under the parent whose name starts with `prefix` (after a crash). */
export async function removeStaleGroups(layout: CgroupLayout, parent: string, prefix: string, log: WarnLogger): Promise<number> {
  let removed = 0;
  for (const base of groupDirs(layout, parent).values()) {
    for (const name of childDirs(base).filter((n) => n.startsWith(prefix))) {
      const dir = path.join(base, name);
      killGroupDir(dir, log);
      let lastError: Error | null = null;
      for (let i = 0; i < 20; i++) {
        try {
          rmdirSync(dir);
          removed++;
          lastError = null;
          break;
        } catch (err) {
          lastError = err as Error;
          await sleep(10);
        }
      }
      if (lastError) log.warn({ group: dir, err: lastError.message }, 'removing a stale run group failed (ignored)');
    }
  }
  return removed;
}

/** Names of the child groups of `parent` in any hierarchy (a group may exist in only some of them). */
export async function listChildGroups(layout: CgroupLayout, parent: string): Promise<string[]> {
  const names = new Set<string>();
  for (const dir of groupDirs(layout, parent).values()) for (const name of childDirs(dir)) names.add(name);
  return [...names].sort();
}

/**
 * Kills every process in the group tree `rel` (in every hierarchy) and removes its groups, children
 * first. Throws (after trying everything) when some group could not be removed.
 */
export async function removeGroupTree(layout: CgroupLayout, rel: string, log: WarnLogger, killTimeoutMs = 5000): Promise<void> {
  const errors: string[] = [];
  for (const child of await listChildGroups(layout, rel)) {
    await removeGroupTree(layout, `${rel}/${child}`, log, killTimeoutMs).catch((err: Error) => errors.push(err.message));
  }
  const group = RunCgroup.attach(layout, rel, log);
  if (!(await group.kill(killTimeoutMs))) errors.push(`${rel}: processes still in it after ${killTimeoutMs} ms`);
  await group.remove().catch((err: Error) => errors.push(err.message));
  if (errors.length) throw new Error(errors.join('; '));
}

/**
 * Removes the group `rel` only if it has no process and no child group in any hierarchy and was
 * created at least `minAgeMs` ago; never kills. True when it is gone.
 */
export async function removeIfEmptyAndOld(layout: CgroupLayout, rel: string, minAgeMs: number): Promise<boolean> {
  const present: string[] = [];
  for (const dir of groupDirs(layout, rel).values()) {
    // Absent from this hierarchy (or unreadable): nothing of the group to remove there.
    const st = await fs.stat(dir).then(
      (s) => s,
      () => null,
    );
    if (!st) continue;
    if (Date.now() - Math.min(st.ctimeMs, st.mtimeMs) < minAgeMs) return false;
    if (((await readText(path.join(dir, 'cgroup.procs'))) ?? '').trim() !== '') return false;
    if ((await fs.readdir(dir, { withFileTypes: true })).some((e) => e.isDirectory())) return false;
    present.push(dir);
  }
  for (const dir of present.reverse()) {
    try {
      await fs.rmdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return false;
    }
  }
  return true;
}
