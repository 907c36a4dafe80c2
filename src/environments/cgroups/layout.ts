// Which cgroup layout this host has, and the parent groups the run groups live in, on cgroup v2
// (unified) and v1 (per-controller) hosts:
//
//   v2: <root>/<parent>/<run>          memory.max, memory.swap.max, pids.max, cpu.max, cpuset.cpus
//   v1: <root>/<ctrl>/<parent>/<run>   for ctrl in memory, pids, cpu, cpuacct, [cpuset], [freezer]
//       plus <root>/unified/<parent>/<run> when a v2 tree is mounted next to v1 ("hybrid"):
//       it has no controllers but supports cgroup.kill, which kills a whole tree atomically, and
//       cpu.stat; a run group then leaves out freezer and cpuacct (run-cgroup.ts).

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { DEFAULT_CGROUP_PARENT, DEFAULT_CGROUP_ROOT } from '../../config/container-driver';
import { pathExists } from '../../infra/fs-utils';
import { readText, write } from './cgroup-files';

export { DEFAULT_CGROUP_PARENT, DEFAULT_CGROUP_ROOT };

export type CgroupLayout =
  | { version: 2; root: string; controllers: Set<string> }
  | {
      version: 1;
      root: string;
      /** Controller name → mount directory, e.g. memory → /sys/fs/cgroup/memory. */
      mounts: Map<string, string>;
      /** A v2 tree mounted next to v1 (hybrid), used only for cgroup.kill; null if absent. */
      unified: string | null;
    };

const V1_REQUIRED = ['memory', 'pids', 'cpu', 'cpuacct'] as const;
const V1_OPTIONAL = ['cpuset', 'freezer'] as const;
const V1_MARKERS: Record<string, string> = {
  memory: 'memory.limit_in_bytes',
  pids: 'cgroup.procs',
  cpu: 'cpu.cfs_quota_us',
  cpuacct: 'cpuacct.usage',
  cpuset: 'cpuset.cpus',
  freezer: 'cgroup.procs',
};

/**
 * Finds which cgroup layout this host has. Pure v2 when `<root>/cgroup.controllers` lists memory
 * and pids; otherwise v1 when the memory, pids, cpu and cpuacct hierarchies are mounted (possibly
 * combined as `cpu,cpuacct`). Returns null when neither is usable.
 */
export async function detectCgroupLayout(root = DEFAULT_CGROUP_ROOT): Promise<CgroupLayout | null> {
  const controllersText = await readText(path.join(root, 'cgroup.controllers'));
  if (controllersText !== null) {
    const controllers = new Set(controllersText.trim().split(/\s+/).filter(Boolean));
    if (controllers.has('memory') && controllers.has('pids')) return { version: 2, root, controllers };
  }
  const mounts = new Map<string, string>();
  for (const ctrl of [...V1_REQUIRED, ...V1_OPTIONAL]) {
    const dir = path.join(root, ctrl);
    // `cpu` and `cpuacct` are often one hierarchy with symlinks; a file of the controller says it is
    // there. The root of a v1 pids or freezer hierarchy has no file of its own: cgroup.procs without
    // cgroup.controllers (which only v2 has) then.
    const marker = V1_MARKERS[ctrl];
    if (!(await pathExists(path.join(dir, marker)))) continue;
    if (marker === 'cgroup.procs' && (await pathExists(path.join(dir, 'cgroup.controllers')))) continue;
    mounts.set(ctrl, dir);
  }
  if (V1_REQUIRED.every((c) => mounts.has(c))) {
    const unifiedDir = path.join(root, 'unified');
    const unified = (await pathExists(path.join(unifiedDir, 'cgroup.procs'))) ? unifiedDir : null;
    return { version: 1, root, mounts, unified };
  }
  return null;
}

export function describeLayout(layout: CgroupLayout): string {
  if (layout.version === 2) return `cgroup v2 at ${layout.root} (${[...layout.controllers].join(' ')})`;
  return `cgroup v1 at ${layout.root} (${[...layout.mounts.keys()].join(' ')})${layout.unified ? ' + v2 unified tree for cgroup.kill' : ''}`;
}

/** The directories of group `rel` in every hierarchy: v2 (`v2`), or each v1 controller plus `unified`. */
export function groupDirs(layout: CgroupLayout, rel: string): Map<string, string> {
  const dirs = new Map<string, string>();
  if (layout.version === 2) {
    dirs.set('v2', path.join(layout.root, rel));
  } else {
    for (const [ctrl, mount] of layout.mounts) dirs.set(ctrl, path.join(mount, rel));
    if (layout.unified) dirs.set('unified', path.join(layout.unified, rel));
  }
  return dirs;
}

/**
 * Creates (once) the project's parent group and enables the controllers its children need.
 * Throws an Error that says what is missing.
 */
export async function prepareCgroupParent(layout: CgroupLayout, parent = DEFAULT_CGROUP_PARENT): Promise<void> {
  // The parent may be nested (`test-orchestrator/<instance>`): every level is prepared.
  const levels = parentLevels(parent);
  if (layout.version === 2) {
    const wanted = ['memory', 'pids', 'cpu', 'cpuset'].filter((c) => layout.controllers.has(c));
    await enableV2Controllers(layout.root, wanted);
    for (const level of levels) {
      const dir = path.join(layout.root, level);
      await mkdirIfMissing(dir);
      await enableV2Controllers(dir, wanted);
    }
    return;
  }
  for (const [ctrl, mount] of layout.mounts) {
    for (const level of levels) {
      const dir = path.join(mount, level);
      await mkdirIfMissing(dir);
      if (ctrl === 'cpuset') {
        // A v1 cpuset group starts with empty cpus/mems, and joining it fails until they are set.
        await copyIfEmpty(path.dirname(dir), dir, 'cpuset.cpus');
        await copyIfEmpty(path.dirname(dir), dir, 'cpuset.mems');
      }
    }
  }
  if (layout.unified) for (const level of levels) await mkdirIfMissing(path.join(layout.unified, level));
}

/** `a/b/c` → [`a`, `a/b`, `a/b/c`]. */
function parentLevels(parent: string): string[] {
  const parts = parent.split('/').filter(Boolean);
  if (parts.length === 0 || parts.some((p) => p === '.' || p === '..')) throw new Error(`invalid cgroup parent '${parent}'`);
  return parts.map((_, i) => parts.slice(0, i + 1).join('/'));
}

async function mkdirIfMissing(dir: string): Promise<void> {
  try {
    await fs.mkdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}

async function enableV2Controllers(dir: string, wanted: string[]): Promise<void> {
  const current = new Set(((await readText(path.join(dir, 'cgroup.subtree_control'))) ?? '').trim().split(/\s+/));
  const missing = wanted.filter((c) => !current.has(c));
  if (missing.length === 0) return;
  try {
    await write(path.join(dir, 'cgroup.subtree_control'), missing.map((c) => `+${c}`).join(' '));
  } catch (err) {
    throw new Error(
      `cannot enable cgroup controllers ${missing.join(', ')} in ${dir} (${(err as Error).message}); ` +
        'the orchestrator needs a delegated cgroup v2 subtree without processes in it ' +
        '(run it as root, or under systemd with Delegate=yes and point cgroupParent at that subtree)',
      { cause: err },
    );
  }
}

async function copyIfEmpty(fromDir: string, toDir: string, file: string): Promise<void> {
  const current = ((await readText(path.join(toDir, file))) ?? '').trim();
  if (current) return;
  const parentValue = ((await readText(path.join(fromDir, file))) ?? '').trim();
  if (parentValue) await write(path.join(toDir, file), parentValue);
}
