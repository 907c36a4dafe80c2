// One run's cgroup: limits, accounting, and killing the whole tree. One group per run, under a parent
// group that may be nested (the container driver uses `test-orchestrator/<instance>/`, see
// container/instance.ts). A process joins a run group by writing its own pid to every `procsFiles`
// entry before it execs the sandbox (see container/run.ts), so nothing the test starts escapes
// accounting or killing.

import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { bestEffort, bestEffortSync, type WarnLogger } from '../../infra/best-effort';
import { exists, killGroupDir, killPids, makeGroupDir, procsOf, readKeyed, readKeyedAll, readNumber, readText, removeGroupDir, write } from './cgroup-files';
import { groupDirs, type CgroupLayout } from './layout';

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
  /** CPU time in user mode and in the kernel (v1 cpuacct.usage_user/usage_sys, else cpuacct.stat; v2 cpu.stat). */
  userCpuMs: number | null;
  systemCpuMs: number | null;
  memoryBytes: number | null;
  peakMemoryBytes: number | null;
  /** Number of OOM kills in the group; null when the kernel does not report it. */
  oomKills: number | null;
  /** Forks refused because the group was at its pids limit (`max` in pids.events); null when not reported. */
  pidsLimitHits: number | null;
}

/**
 * What the v2 tree of a hybrid host offers below `parent` (kernel 5.14+ `cgroup.kill`; `cpu.stat`, which
 * v2 keeps for every group, controllers or not), once per parent: with both, a run group skips the v1
 * freezer and cpuacct hierarchies (one directory and one join fewer each: joining takes the cgroup
 * mutex across an RCU grace period).
 */
const unifiedOffers = new Map<string, { kill: boolean; cpuStat: boolean }>();
function unifiedOffer(unified: string, parent: string): { kill: boolean; cpuStat: boolean } {
  const dir = path.join(unified, parent);
  let offer = unifiedOffers.get(dir);
  if (!offer) {
    offer = { kill: exists(path.join(dir, 'cgroup.kill')), cpuStat: exists(path.join(dir, 'cpu.stat')) };
    if (exists(dir)) unifiedOffers.set(dir, offer); // a parent not made yet says nothing
  }
  return offer;
}

/** One run's cgroup (a directory per hierarchy). */
export class RunCgroup {
  private removed = false;

  private constructor(
    readonly layout: CgroupLayout,
    /** Directories of this group, one per hierarchy (v1) or one (v2); the first is the main one. */
    readonly dirs: ReadonlyMap<string, string>,
    private readonly log: WarnLogger,
  ) {}

  /**
   * Creates the group `<parent>/<name>` with the given limits. The parent must have been prepared
   * (prepareCgroupParent). On failure nothing is left behind. Its directories are made at once, its
   * limits written synchronously (cgroup-files.ts says why).
   */
  static async create(layout: CgroupLayout, parent: string, name: string, limits: CgroupLimits, log: WarnLogger): Promise<RunCgroup> {
    if (!/^[A-Za-z0-9._-]+$/.test(name) || name.startsWith('.')) throw new Error(`invalid cgroup name '${name}'`);
    const dirs = RunCgroup.dirsOf(layout, parent, name, limits.cpuset !== undefined);
    const group = new RunCgroup(layout, dirs, log);
    try {
      const made = await Promise.allSettled([...dirs.values()].map((dir) => makeGroupDir(dir)));
      const failed = made.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      group.applyLimits(limits);
    } catch (err) {
      await bestEffort(log, `removing the half-made cgroup ${parent}/${name}`, () => group.removeEmpty());
      throw err;
    }
    return group;
  }

  /** The directories a run group `<parent>/<name>` has, by hierarchy (`pinned`: a cpuset of its own). */
  static dirsOf(layout: CgroupLayout, parent: string, name: string, pinned: boolean): Map<string, string> {
    const dirs = new Map<string, string>();
    if (layout.version === 2) {
      dirs.set('v2', path.join(layout.root, parent, name));
      return dirs;
    }
    const offer = layout.unified ? unifiedOffer(layout.unified, parent) : { kill: false, cpuStat: false };
    for (const [ctrl, mount] of layout.mounts) {
      if (ctrl === 'cpuset' && !pinned) continue; // only join cpuset when pinning
      if (ctrl === 'freezer' && offer.kill) continue; // cgroup.kill of the unified group kills
      if (ctrl === 'cpuacct' && offer.cpuStat) continue; // cpu.stat of the unified group counts
      dirs.set(ctrl, path.join(mount, parent, name));
    }
    if (layout.unified) dirs.set('unified', path.join(layout.unified, parent, name));
    return dirs;
  }

  /**
   * An existing group `<rel>` (relative to each hierarchy root), in every hierarchy of the layout, to
   * kill what is in it and remove it (e.g. a group a dead process left). Creates nothing.
   */
  static attach(layout: CgroupLayout, rel: string, log: WarnLogger): RunCgroup {
    return new RunCgroup(layout, groupDirs(layout, rel), log);
  }

  /** The cgroup.procs files a process writes its pid to in order to join the group. */
  get procsFiles(): string[] {
    return [...this.dirs.values()].map((d) => path.join(d, 'cgroup.procs'));
  }

  private dir(key: string): string | undefined {
    return this.dirs.get(key);
  }

  private applyLimits(limits: CgroupLimits): void {
    const memory = Math.max(4 * 1024 * 1024, Math.floor(limits.memoryBytes));
    const pids = Math.max(1, Math.floor(limits.pids));
    const period = 100_000;
    const quota = Math.max(1000, Math.round(limits.cpus * period));
    const cpuset = limits.cpuset?.join(',');
    if (this.layout.version === 2) {
      const d = this.dir('v2')!;
      write(path.join(d, 'memory.max'), String(memory));
      // Without swap the memory limit is a real limit (and the OOM killer acts on it).
      if (exists(path.join(d, 'memory.swap.max'))) write(path.join(d, 'memory.swap.max'), '0');
      write(path.join(d, 'pids.max'), String(pids));
      if (exists(path.join(d, 'cpu.max'))) write(path.join(d, 'cpu.max'), `${quota} ${period}`);
      if (cpuset) {
        if (!(exists(path.join(d, 'cpuset.cpus')))) throw new Error('dedicated CPUs asked for but the cpuset controller is not available');
        write(path.join(d, 'cpuset.cpus'), cpuset);
      }
      return;
    }
    const mem = this.dir('memory')!;
    write(path.join(mem, 'memory.limit_in_bytes'), String(memory));
    // memsw (memory + swap) only exists with swap accounting; must be >= limit_in_bytes.
    if (exists(path.join(mem, 'memory.memsw.limit_in_bytes'))) {
      write(path.join(mem, 'memory.memsw.limit_in_bytes'), String(memory));
    }
    bestEffortSync(this.log, 'setting memory.swappiness to 0', () => write(path.join(mem, 'memory.swappiness'), '0'));
    write(path.join(this.dir('pids')!, 'pids.max'), String(pids));
    const cpu = this.dir('cpu')!;
    write(path.join(cpu, 'cpu.cfs_period_us'), String(period));
    write(path.join(cpu, 'cpu.cfs_quota_us'), String(quota));
    if (cpuset) {
      const cs = this.dir('cpuset');
      if (!cs) throw new Error('dedicated CPUs asked for but the cpuset controller is not mounted');
      write(path.join(cs, 'cpuset.cpus'), cpuset);
      const parentMems = ((readText(path.join(path.dirname(cs), 'cpuset.mems'))) ?? '0').trim() || '0';
      write(path.join(cs, 'cpuset.mems'), parentMems);
    }
  }

  /**
   * The group's share of contended CPU, as a fraction of the default (1: the default weight): v2
   * cpu.weight (default 100), v1 cpu.shares (default 1024). What runs in the background (a VM booting
   * ahead of demand) yields to what a test waits for. A hierarchy without the file is left as it is.
   */
  setCpuShare(fraction: number): void {
    const f = Math.max(0.01, Math.min(1, fraction));
    const [file, value] = this.layout.version === 2
      ? [path.join(this.dir('v2')!, 'cpu.weight'), Math.max(1, Math.round(100 * f))]
      : [path.join(this.dir('cpu')!, 'cpu.shares'), Math.max(2, Math.round(1024 * f))];
    if (exists(file)) write(file, String(value));
  }

  async stats(): Promise<CgroupStats> {
    if (this.layout.version === 2) {
      const d = this.dir('v2')!;
      return {
        ...cpuStat(d),
        memoryBytes: readNumber(path.join(d, 'memory.current')),
        peakMemoryBytes: readNumber(path.join(d, 'memory.peak')), // kernel >= 5.19
        oomKills: readKeyed(path.join(d, 'memory.events'), 'oom_kill'),
        pidsLimitHits: readKeyed(path.join(d, 'pids.events'), 'max'),
      };
    }
    const mem = this.dir('memory')!;
    const cpuacct = this.dir('cpuacct');
    let cpu: Pick<CgroupStats, 'cpuTimeMs' | 'userCpuMs' | 'systemCpuMs'>;
    if (cpuacct) {
      const ns = readNumber(path.join(cpuacct, 'cpuacct.usage'));
      cpu = { cpuTimeMs: ns === null ? null : Math.round(ns / 1e6), ...cpuacctSplit(cpuacct) };
    } else cpu = cpuStat(this.dir('unified')!);
    return {
      ...cpu,
      memoryBytes: readNumber(path.join(mem, 'memory.usage_in_bytes')),
      peakMemoryBytes: readNumber(path.join(mem, 'memory.max_usage_in_bytes')),
      oomKills: readKeyed(path.join(mem, 'memory.oom_control'), 'oom_kill'), // kernel >= 4.13
      pidsLimitHits: readKeyed(path.join(this.dir('pids')!, 'pids.events'), 'max'),
    };
  }

  /** Pids currently in the group (the main hierarchy: v2 group or v1 pids controller). */
  pids(): number[] {
    return procsOf(this.layout.version === 2 ? this.dir('v2')! : this.dir('pids')!);
  }

  /**
   * Kills every process in the group, including double-forked daemons, and waits until it is empty
   * (at most `timeoutMs`). v2 and hybrid hosts: `cgroup.kill`. Pure v1: freeze (when the freezer
   * is mounted), SIGKILL every pid in cgroup.procs, thaw, repeat until empty.
   */
  async kill(timeoutMs = 5000): Promise<boolean> {
    if (this.removed) return true;
    const killDir = this.layout.version === 2 ? this.dir('v2')! : (this.dir('unified') ?? null);
    const deadline = Date.now() + timeoutMs;
    let delay = 2;
    for (;;) {
      const pids = this.pids();
      if (pids.length === 0) return true;
      if (Date.now() > deadline) return false;
      if (killDir && exists(path.join(killDir, 'cgroup.kill'))) {
        killGroupDir(killDir, this.log);
      } else {
        this.killFrozen(pids);
      }
      await sleep(delay);
      delay = Math.min(delay * 2, 50);
    }
  }

  /** Pure v1: SIGKILL every pid, under a freeze when the freezer is mounted (frozen tasks cannot fork). */
  private killFrozen(pids: number[]): void {
    const freezer = this.dir('freezer');
    const state = freezer ? path.join(freezer, 'freezer.state') : null;
    if (state) bestEffortSync(this.log, 'freezing the cgroup', () => write(state, 'FROZEN'));
    // Re-read the list under the freeze so none is missed.
    killPids(state ? this.pids() : pids, this.log);
    if (state) bestEffortSync(this.log, 'thawing the cgroup', () => write(state, 'THAWED'));
  }

  /**
   * Kills what is left and removes the group's directories (all at once). Idempotent. A directory
   * whose last task is still leaving (EBUSY) is killed again and retried, after 1 ms, then 2, 4… (about
   * 0.5 s in all).
   */
  async remove(): Promise<void> {
    if (this.removed) return;
    const errors: string[] = [];
    const removeOne = async (dir: string) => {
      for (let i = 0, delay = 1; i < 50; i++) {
        const r = await this.rmdir(dir);
        if (r === 'ok') return;
        if (r !== 'busy') return void errors.push(r.error);
        killGroupDir(dir, this.log);
        await sleep(delay);
        delay = Math.min(delay * 2, 20);
      }
      errors.push(`${dir}: still busy`);
    };
    await Promise.all([...this.dirs.values()].map(removeOne));
    this.removed = errors.length === 0;
    if (errors.length) throw new Error(`cannot remove cgroup: ${errors.join('; ')}`);
  }

  /** Removes the directories of a group no task ever joined (a half-made one); throws what fails. */
  private async removeEmpty(): Promise<void> {
    const results = await Promise.all([...this.dirs.values()].map(async (dir) => ({ dir, r: await this.rmdir(dir) })));
    const bad = results.find((x) => x.r !== 'ok');
    if (bad) throw new Error(bad.r === 'busy' ? `${bad.dir}: busy` : (bad.r as { error: string }).error);
    this.removed = true;
  }

  private async rmdir(dir: string): Promise<'ok' | 'busy' | { error: string }> {
    try {
      await removeGroupDir(dir);
      return 'ok';
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return 'ok';
      if (code === 'EBUSY') return 'busy';
      return { error: `${dir}: ${(err as Error).message}` };
    }
  }
}

/** CPU time from a v2 group's cpu.stat (µs). */
function cpuStat(dir: string): Pick<CgroupStats, 'cpuTimeMs' | 'userCpuMs' | 'systemCpuMs'> {
  const s = readKeyedAll(path.join(dir, 'cpu.stat'));
  const ms = (key: string) => {
    const v = s?.get(key);
    return v === undefined ? null : Math.round(v / 1000);
  };
  return { cpuTimeMs: ms('usage_usec'), userCpuMs: ms('user_usec'), systemCpuMs: ms('system_usec') };
}

/** Clock ticks of cpuacct.stat: USER_HZ, 100 on every Linux architecture. */
const USER_HZ = 100;

/** User and system CPU of a v1 cpuacct group: nanoseconds where the kernel has them (4.7+), else ticks. */
function cpuacctSplit(dir: string): { userCpuMs: number | null; systemCpuMs: number | null } {
  const userNs = readNumber(path.join(dir, 'cpuacct.usage_user'));
  const sysNs = readNumber(path.join(dir, 'cpuacct.usage_sys'));
  if (userNs !== null && sysNs !== null) return { userCpuMs: Math.round(userNs / 1e6), systemCpuMs: Math.round(sysNs / 1e6) };
  const user = readKeyed(path.join(dir, 'cpuacct.stat'), 'user');
  const system = readKeyed(path.join(dir, 'cpuacct.stat'), 'system');
  return { userCpuMs: user === null ? null : (user * 1000) / USER_HZ, systemCpuMs: system === null ? null : (system * 1000) / USER_HZ };
}
