// Cgroup limits and accounting for sandboxed runs, on cgroup v2 (unified) and v1 (per-controller)
// hosts. One group per run, under a parent group that may be nested (the container driver uses
// `test-orchestrator/<instance>/`, see container/instance.ts):
//
//   v2: <root>/<parent>/<run>          memory.max, memory.swap.max, pids.max, cpu.max, cpuset.cpus
//   v1: <root>/<ctrl>/<parent>/<run>   for ctrl in memory, pids, cpu, cpuacct, [cpuset], [freezer]
//       plus <root>/unified/<parent>/<run> when a v2 tree is mounted next to v1 ("hybrid"):
//       it has no controllers but supports cgroup.kill, which kills a whole tree atomically.
//
// A process joins a run group by writing its own pid to every `procsFiles` entry before it execs
// the sandbox (see the container driver), so nothing the test starts escapes accounting or killing.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathExists } from '../infra/fs-utils';

export const DEFAULT_CGROUP_ROOT = '/sys/fs/cgroup';
export const DEFAULT_CGROUP_PARENT = 'test-orchestrator';

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

export interface CgroupLimits {
  memoryBytes: number;
  /** CPU bandwidth in CPUs (1.5 = one and a half CPUs). */
  cpus: number;
  pids: number;
  /** Pin to these CPUs (cpuset); undefined leaves the parent's set. */
  cpuset?: number[];
}

export interface CgroupStats {
  cpuTimeMs: number | null;
  memoryBytes: number | null;
  peakMemoryBytes: number | null;
  /** Number of OOM kills in the group; null when the kernel does not report it. */
  oomKills: number | null;
  /** Forks refused because the group was at its pids limit (`max` in pids.events); null when not reported. */
  pidsLimitHits: number | null;
}

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


async function readText(p: string): Promise<string | null> {
  try {
    return await fs.readFile(p, 'utf8');
  } catch {
    return null;
  }
}

async function readNumber(p: string): Promise<number | null> {
  const text = await readText(p);
  if (text === null) return null;
  const n = Number(text.trim());
  return Number.isFinite(n) ? n : null;
}

/** Reads `key value` lines (cpu.stat, memory.events, memory.oom_control). */
async function readKeyed(p: string, key: string): Promise<number | null> {
  const text = await readText(p);
  if (text === null) return null;
  for (const line of text.split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k === key && v !== undefined) {
      const n = Number(v);
      return Number.isFinite(n) ? n : null;
    }
  }
  return null;
}

async function write(p: string, value: string): Promise<void> {
  await fs.writeFile(p, value);
}

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

/** One run's cgroup (a directory per hierarchy). */
export class RunCgroup {
  private removed = false;

  private constructor(
    readonly layout: CgroupLayout,
    /** Directories of this group, one per hierarchy (v1) or one (v2); the first is the main one. */
    readonly dirs: ReadonlyMap<string, string>,
  ) {}

  /**
   * Creates the group `<parent>/<name>` with the given limits. The parent must have been prepared
   * (prepareCgroupParent). On failure nothing is left behind.
   */
  static async create(layout: CgroupLayout, parent: string, name: string, limits: CgroupLimits): Promise<RunCgroup> {
    if (!/^[A-Za-z0-9._-]+$/.test(name) || name.startsWith('.')) throw new Error(`invalid cgroup name '${name}'`);
    const dirs = new Map<string, string>();
    if (layout.version === 2) {
      dirs.set('v2', path.join(layout.root, parent, name));
    } else {
      for (const [ctrl, mount] of layout.mounts) {
        if (ctrl === 'cpuset' && !limits.cpuset) continue; // only join cpuset when pinning
        dirs.set(ctrl, path.join(mount, parent, name));
      }
      if (layout.unified) dirs.set('unified', path.join(layout.unified, parent, name));
    }
    const group = new RunCgroup(layout, dirs);
    try {
      for (const dir of dirs.values()) await fs.mkdir(dir);
      await group.applyLimits(limits);
    } catch (err) {
      await group.remove().catch(() => undefined);
      throw err;
    }
    return group;
  }

  /**
   * An existing group `<rel>` (relative to each hierarchy root), in every hierarchy of the layout, to
   * kill what is in it and remove it (e.g. a group a dead process left). Creates nothing.
   */
  static attach(layout: CgroupLayout, rel: string): RunCgroup {
    return new RunCgroup(layout, groupDirs(layout, rel));
  }

  /** The cgroup.procs files a process writes its pid to in order to join the group. */
  get procsFiles(): string[] {
    return [...this.dirs.values()].map((d) => path.join(d, 'cgroup.procs'));
  }

  private dir(key: string): string | undefined {
    return this.dirs.get(key);
  }

  private async applyLimits(limits: CgroupLimits): Promise<void> {
    const memory = Math.max(4 * 1024 * 1024, Math.floor(limits.memoryBytes));
    const pids = Math.max(1, Math.floor(limits.pids));
    const period = 100_000;
    const quota = Math.max(1000, Math.round(limits.cpus * period));
    const cpuset = limits.cpuset?.join(',');
    if (this.layout.version === 2) {
      const d = this.dir('v2')!;
      await write(path.join(d, 'memory.max'), String(memory));
      // Without swap the memory limit is a real limit (and the OOM killer acts on it).
      if (await pathExists(path.join(d, 'memory.swap.max'))) await write(path.join(d, 'memory.swap.max'), '0');
      await write(path.join(d, 'pids.max'), String(pids));
      if (await pathExists(path.join(d, 'cpu.max'))) await write(path.join(d, 'cpu.max'), `${quota} ${period}`);
      if (cpuset) {
        if (!(await pathExists(path.join(d, 'cpuset.cpus')))) throw new Error('dedicated CPUs asked for but the cpuset controller is not available');
        await write(path.join(d, 'cpuset.cpus'), cpuset);
      }
      return;
    }
    const mem = this.dir('memory')!;
    await write(path.join(mem, 'memory.limit_in_bytes'), String(memory));
    // memsw (memory + swap) only exists with swap accounting; must be >= limit_in_bytes.
    if (await pathExists(path.join(mem, 'memory.memsw.limit_in_bytes'))) {
      await write(path.join(mem, 'memory.memsw.limit_in_bytes'), String(memory));
    }
    await write(path.join(mem, 'memory.swappiness'), '0').catch(() => undefined);
    await write(path.join(this.dir('pids')!, 'pids.max'), String(pids));
    const cpu = this.dir('cpu')!;
    await write(path.join(cpu, 'cpu.cfs_period_us'), String(period));
    await write(path.join(cpu, 'cpu.cfs_quota_us'), String(quota));
    if (cpuset) {
      const cs = this.dir('cpuset');
      if (!cs) throw new Error('dedicated CPUs asked for but the cpuset controller is not mounted');
      await write(path.join(cs, 'cpuset.cpus'), cpuset);
      const parentMems = ((await readText(path.join(path.dirname(cs), 'cpuset.mems'))) ?? '0').trim() || '0';
      await write(path.join(cs, 'cpuset.mems'), parentMems);
    }
  }

  async stats(): Promise<CgroupStats> {
    if (this.layout.version === 2) {
      const d = this.dir('v2')!;
      const usec = await readKeyed(path.join(d, 'cpu.stat'), 'usage_usec');
      return {
        cpuTimeMs: usec === null ? null : Math.round(usec / 1000),
        memoryBytes: await readNumber(path.join(d, 'memory.current')),
        peakMemoryBytes: await readNumber(path.join(d, 'memory.peak')), // kernel >= 5.19
        oomKills: await readKeyed(path.join(d, 'memory.events'), 'oom_kill'),
        pidsLimitHits: await readKeyed(path.join(d, 'pids.events'), 'max'),
      };
    }
    const mem = this.dir('memory')!;
    const ns = await readNumber(path.join(this.dir('cpuacct')!, 'cpuacct.usage'));
    return {
      cpuTimeMs: ns === null ? null : Math.round(ns / 1e6),
      memoryBytes: await readNumber(path.join(mem, 'memory.usage_in_bytes')),
      peakMemoryBytes: await readNumber(path.join(mem, 'memory.max_usage_in_bytes')),
      oomKills: await readKeyed(path.join(mem, 'memory.oom_control'), 'oom_kill'), // kernel >= 4.13
      pidsLimitHits: await readKeyed(path.join(this.dir('pids')!, 'pids.events'), 'max'),
    };
  }

  /** Pids currently in the group (the main hierarchy: v2 group or v1 pids controller). */
  async pids(): Promise<number[]> {
    const d = this.layout.version === 2 ? this.dir('v2')! : this.dir('pids')!;
    const text = (await readText(path.join(d, 'cgroup.procs'))) ?? '';
    return text
      .split('\n')
      .filter(Boolean)
      .map(Number)
      .filter((n) => Number.isInteger(n) && n > 0);
  }

  /**
   * Kills every process in the group, including double-forked daemons, and waits until it is empty
   * (at most `timeoutMs`). v2 and hybrid hosts: `cgroup.kill`. Pure v1: freeze (when the freezer
   * is mounted), SIGKILL every pid in cgroup.procs, thaw, repeat until empty.
   */
  async kill(timeoutMs = 5000): Promise<boolean> {
    if (this.removed) return true;
    const killFile =
      this.layout.version === 2
        ? path.join(this.dir('v2')!, 'cgroup.kill')
        : this.dir('unified')
          ? path.join(this.dir('unified')!, 'cgroup.kill')
          : null;
    const deadline = Date.now() + timeoutMs;
    let delay = 2;
    for (;;) {
      const pids = await this.pids();
      if (pids.length === 0) return true;
      if (Date.now() > deadline) return false;
      if (killFile && (await pathExists(killFile))) {
        await write(killFile, '1').catch(() => undefined);
      } else {
        await this.killV1(pids);
      }
      await sleep(delay);
      delay = Math.min(delay * 2, 50);
    }
  }

  private async killV1(pids: number[]): Promise<void> {
    const freezer = this.dir('freezer');
    const state = freezer ? path.join(freezer, 'freezer.state') : null;
    if (state) await write(state, 'FROZEN').catch(() => undefined);
    // Frozen tasks cannot fork; re-read the list under the freeze so none is missed.
    const all = state ? await this.pids() : pids;
    for (const pid of all) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (state) await write(state, 'THAWED').catch(() => undefined);
  }

  /** Kills what is left and removes the group's directories. Idempotent. */
  async remove(): Promise<void> {
    if (this.removed) return;
    const errors: string[] = [];
    for (const dir of [...this.dirs.values()].reverse()) {
      if (!(await pathExists(dir))) continue;
      let ok = false;
      for (let i = 0; i < 50 && !ok; i++) {
        try {
          await fs.rmdir(dir);
          ok = true;
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') ok = true;
          else if (code === 'EBUSY') {
            // Tasks still exiting (or a leftover); kill and retry.
            await this.killProcsIn(dir);
            await sleep(10);
          } else {
            errors.push(`${dir}: ${(err as Error).message}`);
            break;
          }
        }
      }
      if (!ok && errors.length === 0) errors.push(`${dir}: still busy`);
    }
    this.removed = errors.length === 0;
    if (errors.length) throw new Error(`cannot remove cgroup: ${errors.join('; ')}`);
  }

  private async killProcsIn(dir: string): Promise<void> {
    if (await pathExists(path.join(dir, 'cgroup.kill'))) {
      await write(path.join(dir, 'cgroup.kill'), '1').catch(() => undefined);
      return;
    }
    const text = (await readText(path.join(dir, 'cgroup.procs'))) ?? '';
    for (const pid of text.split('\n').filter(Boolean).map(Number)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
}

/** Removes leftover run groups under the parent whose name starts with `prefix` (after a crash). */
export async function removeStaleGroups(layout: CgroupLayout, parent: string, prefix: string): Promise<number> {
  const bases =
    layout.version === 2
      ? [path.join(layout.root, parent)]
      : [...layout.mounts.values(), ...(layout.unified ? [layout.unified] : [])].map((m) => path.join(m, parent));
  let removed = 0;
  for (const base of bases) {
    let entries: string[] = [];
    try {
      entries = (await fs.readdir(base, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
    } catch {
      continue;
    }
    for (const name of entries.filter((n) => n.startsWith(prefix))) {
      const dir = path.join(base, name);
      if (await pathExists(path.join(dir, 'cgroup.kill'))) await write(path.join(dir, 'cgroup.kill'), '1').catch(() => undefined);
      else {
        const text = (await readText(path.join(dir, 'cgroup.procs'))) ?? '';
        for (const pid of text.split('\n').filter(Boolean).map(Number)) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // gone
          }
        }
      }
      for (let i = 0; i < 20; i++) {
        try {
          await fs.rmdir(dir);
          removed++;
          break;
        } catch {
          await sleep(10);
        }
      }
    }
  }
  return removed;
}


/** The directories of group `rel` in every hierarchy: v2 (`v2`), or each v1 controller plus `unified`. */
function groupDirs(layout: CgroupLayout, rel: string): Map<string, string> {
  const dirs = new Map<string, string>();
  if (layout.version === 2) {
    dirs.set('v2', path.join(layout.root, rel));
  } else {
    for (const [ctrl, mount] of layout.mounts) dirs.set(ctrl, path.join(mount, rel));
    if (layout.unified) dirs.set('unified', path.join(layout.unified, rel));
  }
  return dirs;
}

/** Names of the child groups of `parent` in any hierarchy (a group may exist in only some of them). */
export async function listChildGroups(layout: CgroupLayout, parent: string): Promise<string[]> {
  const names = new Set<string>();
  for (const dir of groupDirs(layout, parent).values()) {
    try {
      for (const e of await fs.readdir(dir, { withFileTypes: true })) if (e.isDirectory()) names.add(e.name);
    } catch {
      // not in this hierarchy
    }
  }
  return [...names].sort();
}

/**
 * Kills every process in the group tree `rel` (in every hierarchy) and removes its groups, children
 * first. Throws (after trying everything) when some group could not be removed.
 */
export async function removeGroupTree(layout: CgroupLayout, rel: string, killTimeoutMs = 5000): Promise<void> {
  const errors: string[] = [];
  for (const child of await listChildGroups(layout, rel)) {
    await removeGroupTree(layout, `${rel}/${child}`, killTimeoutMs).catch((err: Error) => errors.push(err.message));
  }
  const group = RunCgroup.attach(layout, rel);
  if (!(await group.kill(killTimeoutMs))) errors.push(`${rel}: processes still in it after ${killTimeoutMs} ms`);
  await group.remove().catch((err: Error) => errors.push(err.message));
  if (errors.length) throw new Error(errors.join('; '));
}

/**
 * Removes the group `rel` only if it has no process and no child group in any hierarchy and was
 * created at least `minAgeMs` ago; never kills. True when it is gone.
 */
export async function removeIfEmptyAndOld(layout: CgroupLayout, rel: string, minAgeMs: number): Promise<boolean> {
  const dirs = [...groupDirs(layout, rel).values()];
  const present: string[] = [];
  for (const dir of dirs) {
    let st;
    try {
      st = await fs.stat(dir);
    } catch {
      continue;
    }
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
