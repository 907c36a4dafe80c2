// Host-wide reservation of CPUs for performance tests, so that no other test runs on them meanwhile,
// whichever worker process (or driver instance) runs it.
//
// - A reservation is a lock file per CPU, `<lockDir>/cpu-<N>.lock`, holding the pid and start time of
//   the process whose run holds it and the run's name (infra/pid-lock.ts). A holder that is gone (killed,
//   crashed) holds nothing: its lock is taken over by the next reservation. Every driver on the host
//   must use the same lock directory (the container driver's `cpuLockDir`).
// - The lowest CPU of the parent group is never reserved: other runs always have somewhere to go.
// - Every other run joins one cpuset group shared by the host's drivers, `<cgroupBase>/shared` (cgroup
//   v1, where cpuset is a hierarchy of its own beside memory, pids, cpu…). Its cpuset.cpus is kept to
//   the CPUs no reservation holds: after a reservation is taken, and after it is given back, it is
//   rewritten, and the kernel moves the processes already in the group at once. So a unit test that is
//   running when a performance test starts is moved off the performance test's CPUs before that test's
//   script runs, and gets them back when it ends.
// - Whoever changes a reservation rewrites the shared set, reading the reservations again after each
//   write until they did not change meanwhile: of two writers, the last to write saw every reservation
//   made before its write, and a reservation made after it is followed by its own rewrite. So the shared
//   set never keeps a reserved CPU once the reserving run's script starts (it may leave one out for a
//   moment longer than needed: never a sharing, only a short loss).
// - cgroup v2 (one hierarchy: a run's processes are in one group) has no shared group here: reservations
//   still keep performance tests apart from one another, other runs are not kept off their CPUs (logged).
//
// Why not CPUs set aside for performance pools for good: on a small host (2 cores) that halves what
// every other test can use while no performance test runs; reserving per run costs a few file
// operations per performance test and none per other run (joining one more group).

import { promises as fs, readdirSync } from 'node:fs';
import path from 'node:path';
import type { WarnLogger } from '../../infra/best-effort';
import { parseLockHolder, readLockFile, releaseLockFile, tryLockFile, type LockHolder } from '../../infra/pid-lock';
import { processLife } from '../../infra/process-utils';
import { exists, readText, write } from './cgroup-files';
import { formatCpuList, parseCpuList, reservableCpus } from './cpu-list';
import type { CgroupLayout } from './layout';

/** Name of the cpuset group, below the shared parent, of every run that holds no reservation. */
export const SHARED_CPUSET_GROUP = 'shared';
const LOCK_FILE = /^cpu-(\d{1,4})\.lock$/;
const LOCK_HINT = 'remove it if no orchestrator runs on this host';

export interface CpuReservation {
  /** The reserved CPUs, sorted. */
  cpus: number[];
  /** Gives them back (idempotent) and returns them to the shared group. */
  release(): Promise<void>;
}

export interface CpuReservationsOptions {
  layout: CgroupLayout;
  /** The parent group shared by every driver on the host (relative to each hierarchy root). */
  cgroupBase: string;
  /** Where the lock files are: the same directory for every driver on the host; it must exist. */
  lockDir: string;
  log: WarnLogger & { info(obj: object, msg: string): void };
  /** Pause between tries while the CPUs are taken. Default 100 ms. */
  pollMs?: number;
}

export class CpuReservations {
  /** The shared group's directory (cgroup v1 with cpuset); null: other runs are not confined. */
  private readonly sharedDir: string | null;
  private readonly baseDir: string | null;
  private allowedCache: number[] | null = null;
  private warnedShort = false;

  constructor(private readonly o: CpuReservationsOptions) {
    const cpuset = o.layout.version === 1 ? o.layout.mounts.get('cpuset') : undefined;
    this.baseDir = o.layout.version === 1 ? (cpuset ? path.join(cpuset, o.cgroupBase) : null) : path.join(o.layout.root, o.cgroupBase);
    this.sharedDir = cpuset ? path.join(cpuset, o.cgroupBase, SHARED_CPUSET_GROUP) : null;
  }

  /** Makes the shared group (if missing) and brings its CPUs up to date; call once before the first run. */
  async prepare(): Promise<void> {
    if (!this.baseDir) return;
    this.allowedCache = null;
    if (!this.sharedDir) {
      this.o.log.warn({ lockDir: this.o.lockDir }, 'cgroup v2: performance tests get CPUs no other performance test uses, but other runs are not kept off them');
      return;
    }
    await this.ensureShared();
  }

  /**
   * The cgroup.procs file of the shared group, which a run that holds no reservation joins (made anew
   * when something removed it); null when there is none (cgroup v2, no cpuset controller).
   */
  async sharedProcsFile(): Promise<string | null> {
    if (!this.sharedDir) return null;
    if (!exists(path.join(this.sharedDir, 'cpuset.cpus'))) await this.ensureShared();
    return path.join(this.sharedDir, 'cgroup.procs');
  }

  /**
   * Reserves `n` CPUs for the run `tag`, waiting while they are taken (checking every pollMs) until
   * `signal` is aborted (then it throws the signal's reason). Never more than the host can reserve (all
   * of the parent group's CPUs but its lowest): with fewer, as many as there are, logged once; with none
   * (a one-CPU host), null. `onWait` is told each time the CPUs are taken, with who holds them.
   */
  async reserve(n: number, tag: string, signal?: AbortSignal, onWait?: (holders: LockHolder[]) => void): Promise<CpuReservation | null> {
    const order = reservableCpus(await this.allowed());
    const want = Math.min(Math.max(1, Math.floor(n)), order.length);
    if (want < n && !this.warnedShort) {
      this.warnedShort = true;
      this.o.log.warn({ asked: n, reservable: order.length }, `performance tests ask for ${n} dedicated CPUs; this host can dedicate ${order.length} (one CPU stays for every other test)`);
    }
    if (want === 0) return null;
    for (;;) {
      signal?.throwIfAborted();
      const held: { cpu: number; content: string }[] = [];
      const holders: LockHolder[] = [];
      for (const cpu of order) {
        if (held.length === want) break;
        const r = tryLockFile(this.lockPath(cpu), tag);
        if (r.ok) held.push({ cpu, content: r.content });
        else holders.push(r.holder);
      }
      if (held.length === want) {
        const reservation = this.reservation(held);
        try {
          await this.refresh();
        } catch (err) {
          await reservation.release().catch(() => undefined); // the error below says what happened
          throw err;
        }
        return reservation;
      }
      // Never hold some while waiting for the rest: two runs each holding half would wait for ever.
      for (const h of held) releaseLockFile(this.lockPath(h.cpu), h.content);
      onWait?.(holders);
      await sleepUnlessAborted((this.o.pollMs ?? 100) * (0.75 + Math.random() / 2), signal);
    }
  }

  /** The CPUs reserved now by live holders (a lock of a holder that is gone holds nothing). */
  reservedNow(): Set<number> {
    const reserved = new Set<number>();
    let names: string[];
    try {
      names = readdirSync(this.o.lockDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return reserved;
      throw err;
    }
    for (const name of names) {
      const m = LOCK_FILE.exec(name);
      if (!m) continue;
      const text = readLockFile(path.join(this.o.lockDir, name), LOCK_HINT);
      const holder = text === undefined ? undefined : parseLockHolder(text);
      if (!holder) continue;
      const life = processLife(holder.pid, holder.startTime);
      if (life === 'alive' || life === 'exiting') reserved.add(Number(m[1]));
    }
    return reserved;
  }

  /**
   * Writes the shared group's CPUs: the parent's, without the reserved ones; again while the
   * reservations change under it (see the head of this file).
   */
  async refresh(): Promise<void> {
    if (!this.sharedDir) return;
    const allowed = await this.allowed();
    const lowest = Math.min(...allowed);
    for (let i = 0; i < 50; i++) {
      const before = this.reservedNow();
      const cpus = allowed.filter((c) => !before.has(c) || c === lowest);
      await write(path.join(this.sharedDir, 'cpuset.cpus'), formatCpuList(cpus));
      const after = this.reservedNow();
      if (after.size === before.size && [...after].every((c) => before.has(c))) return;
    }
    throw new Error('the CPU reservations kept changing while the shared cpuset was written');
  }

  private reservation(held: { cpu: number; content: string }[]): CpuReservation {
    let released: Promise<void> | null = null;
    return {
      cpus: held.map((h) => h.cpu).sort((a, b) => a - b),
      release: () => {
        released ??= (async () => {
          for (const h of held) releaseLockFile(this.lockPath(h.cpu), h.content);
          await this.refresh();
        })();
        return released;
      },
    };
  }

  private lockPath(cpu: number): string {
    return path.join(this.o.lockDir, `cpu-${cpu}.lock`);
  }

  /** The CPUs of the shared parent group (cgroup v1 cpuset.cpus; v2 cpuset.cpus.effective). */
  private async allowed(): Promise<number[]> {
    if (this.allowedCache) return this.allowedCache;
    if (!this.baseDir) return [];
    const file = this.o.layout.version === 1 ? 'cpuset.cpus' : 'cpuset.cpus.effective';
    const text = await readText(path.join(this.baseDir, file));
    if (text === null) throw new Error(`cannot read ${path.join(this.baseDir, file)}: dedicated CPUs need the cpuset controller`);
    const cpus = parseCpuList(text);
    if (cpus.length === 0) throw new Error(`${path.join(this.baseDir, file)} lists no CPU`);
    this.allowedCache = cpus;
    return cpus;
  }

  private async ensureShared(): Promise<void> {
    const dir = this.sharedDir!;
    try {
      await fs.mkdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    // A new v1 cpuset group has no CPUs and no memory nodes: nothing can join it until both are set.
    const mems = ((await readText(path.join(this.baseDir!, 'cpuset.mems'))) ?? '').trim() || '0';
    if (((await readText(path.join(dir, 'cpuset.mems'))) ?? '').trim() === '') await write(path.join(dir, 'cpuset.mems'), mems);
    await this.refresh();
  }
}

function sleepUnlessAborted(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason ?? new Error('aborted'));
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason ?? new Error('aborted'));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
