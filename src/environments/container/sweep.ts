// Removing what driver instances of dead processes left on this host (after a SIGKILL or a crash):
// the container driver's, and the QEMU driver's (the same instance names and cgroup parent; state dirs
// of its own). Each driver instance keeps its run groups under `<cgroupParent>/<instance>/` and its
// environments' state dirs under `<stateDir>/<instance>/` (instance.ts: the name encodes the owning
// process's pid, start time and pid namespace). A live process's instances are never touched.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { CgroupLayout } from '../cgroups/layout';
import { SHARED_CPUSET_GROUP } from '../cgroups/cpu-reservations';
import { listChildGroups, removeGroupTree, removeIfEmptyAndOld } from '../cgroups/sweep';
import { removeDirAndMounts } from './host-files';
import type { DriverLogger } from './image';
import { instanceStatus } from './instance';

/** A run group of an older version (no instance parent) still empty after this long is a leak. */
const LEGACY_GROUP_MIN_AGE_MS = 5 * 60_000;

export interface SweepTarget {
  /** null: cgroups unavailable, only state dirs are swept. */
  layout: CgroupLayout | null;
  /** The shared parent group of every driver on the host. */
  cgroupBase: string;
  /** The shared state dir of every driver on the host. */
  stateBase: string;
  log: DriverLogger;
}

/**
 * Kills anything still in dead instances' cgroups, removes the groups (children first), then their
 * state dirs. Instances of live processes, or of another pid namespace, are never touched; nor is a
 * state dir whose groups could not be removed, nor the shared cpuset group of every driver. Run group directories of older versions (directly
 * under the shared parent) are removed when empty and more than 5 minutes old. Errors are logged,
 * never thrown.
 */
export async function sweepDeadInstances(t: SweepTarget): Promise<{ cgroups: string[]; stateDirs: string[] }> {
  const { layout, cgroupBase, stateBase, log } = t;
  const removed = { cgroups: [] as string[], stateDirs: [] as string[] };
  const keep = new Set<string>(); // dead instances whose groups are still there: keep their dirs
  if (layout) {
    for (const name of await listChildGroups(layout, cgroupBase)) {
      if (name === SHARED_CPUSET_GROUP) continue; // every driver's (cpu-reservations.ts), never a leftover
      const rel = `${cgroupBase}/${name}`;
      const status = instanceStatus(name);
      try {
        if (status === 'dead') {
          await removeGroupTree(layout, rel, log);
          removed.cgroups.push(rel);
        } else if (status === 'not-instance' && (await removeIfEmptyAndOld(layout, rel, LEGACY_GROUP_MIN_AGE_MS))) {
          removed.cgroups.push(rel);
        }
      } catch (err) {
        keep.add(name);
        log.warn({ group: rel, err: (err as Error).message }, 'sweep: cannot remove the cgroups of a dead driver');
      }
    }
  }
  const entries = await fs.readdir(stateBase).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') log.warn({ dir: stateBase, err: err.message }, 'sweep: cannot list the state dir');
    return [] as string[]; // no state dir yet: nothing to sweep
  });
  const uid = process.getuid?.();
  for (const name of entries) {
    if (keep.has(name) || instanceStatus(name) !== 'dead') continue;
    const dir = path.join(stateBase, name);
    try {
      const st = await fs.lstat(dir);
      // Never follow a link; and only what this user created (a root driver's dirs are root's).
      if (!st.isDirectory() || (uid !== undefined && st.uid !== uid)) continue;
      // Their filesystems are unmounted first; rm never follows symbolic links nor crosses
      // into another mount. The sandbox-owned parts (work, ctl) are below root-owned 0711 dirs
      // with unguessable names, and their processes were killed above.
      await removeDirAndMounts(dir);
      removed.stateDirs.push(dir);
    } catch (err) {
      log.error({ dir, err: (err as Error).message }, 'sweep: cannot remove the state dir of a dead driver');
    }
  }
  if (removed.cgroups.length || removed.stateDirs.length) {
    log.info({ cgroups: removed.cgroups, stateDirs: removed.stateDirs }, 'removed what dead driver instances left behind');
  }
  return removed;
}
