// What a SECURITY run executed: the kernel's sched_process_exec tracepoint (the path each successful
// execve was given, as the sandbox saw it, and the host pid), recorded in a tracefs instance of this
// driver's own (instances/orch-<driver instance>), apart from other tracing on the host.
//
// Which execs are the run's: the instance traces only this process and its descendants (its own pid
// in set_event_pid with `event-fork`: the kernel adds each child at fork and drops it at exit), and
// records forks and exits beside execs; a run's processes are then the descendants of its join
// wrapper (its pid is known at spawn), followed through the fork events in time order (trace_clock
// mono, ordered across CPUs; a pid is dropped at its exit, so a reused pid is not confused). One
// instance for the driver, set up once, because a pid filter is costly to change: replacing a pid
// list, clearing it or removing an instance waits for an RCU grace period under the tracing mutex
// (measured here: 70-100 ms each, and a concurrent write to another instance waits as long; a
// per-run instance made SECURITY runs ~130 ms slower), where setting a first list takes 0.3 ms.
// Tracing is on only while a SECURITY run is going (`tracing_on`: 0.1 ms to switch on, 1-3 ms off);
// meanwhile the events of this process's other children (other tests' sandboxes) are read and
// dropped. Cost of a SECURITY run: one read of the buffer at its end, plus one a second meanwhile.
// IDLE_MS after the last SECURITY run the instance is removed (its pid filter looks at every
// context switch of the host while it exists), and made again (~5 ms) by the next.
//
// Read as binary (per_cpu/cpuN/trace_pipe_raw, the ring buffer's pages) rather than as the text of
// `trace`: a file name may hold a newline, and the text would then let a test forge lines. The buffer
// is the kernel's default size per CPU and does not overwrite: events beyond it are dropped and
// counted by the kernel (`dropped events` in per_cpu/cpuN/stats), which the audit says. Events kept
// in memory are capped (MAX_KEPT). Not recorded: arguments (reading them needs kprobes or eprobes,
// which these kernels lack) and execs that failed.

import { execFile } from 'node:child_process';
import { constants, promises as fs } from 'node:fs';
import path from 'node:path';
import type { DriverLogger } from './image';
import { instanceStatus } from './instance';
import { parsePage, readEventFormats, type ExecEvent, type TraceEvent, type TraceFormats } from './trace-page';

export type { ExecEvent } from './trace-page';

const STANDARD_MOUNT = '/sys/kernel/tracing';
const INSTANCE_NAME = /^orch-(p\d+\.\d+\.\d+\.[0-9a-f]{8})$/;
/** Events held for the runs going on (forks, execs, exits of this process's descendants). */
export const MAX_KEPT = 200_000;
const DRAIN_EVERY_MS = 1000;
const IDLE_MS = 10_000;

export interface ExecTraceResult {
  events: ExecEvent[];
  /** Events the kernel dropped while the run went on (buffer full; host-wide, maybe not the run's). */
  dropped: number;
  /** The buffer's size per CPU in KiB. */
  bufferKb: number;
  /** Why part of the trace could not be read or kept (null: all of it). */
  problem: string | null;
}

/** The mount point of tracefs: the one mounted, else mounted at the standard place (as systemd does at boot). */
async function findOrMountTracefs(log: DriverLogger): Promise<string> {
  const mounts = await fs.readFile('/proc/self/mountinfo', 'utf8');
  for (const line of mounts.split('\n')) {
    // mount id, parent, major:minor, root, mount point, options, optional fields..., -, fstype, source, super options
    const sep = line.indexOf(' - ');
    if (sep < 0 || !line.slice(sep + 3).startsWith('tracefs ')) continue;
    const mountPoint = line.split(' ')[4]?.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (mountPoint && (await fs.stat(path.join(mountPoint, 'instances')).catch(() => null))) return mountPoint;
  }
  await new Promise<void>((resolve, reject) =>
    execFile('/bin/mount', ['-t', 'tracefs', 'nodev', STANDARD_MOUNT], { env: {}, timeout: 10_000 }, (err, _out, stderr) =>
      err ? reject(new Error(`mount -t tracefs at ${STANDARD_MOUNT}: ${String(stderr).trim() || err.message}`)) : resolve(),
    ),
  );
  log.info({ mountPoint: STANDARD_MOUNT }, 'security audit: mounted tracefs');
  return STANDARD_MOUNT;
}

interface Instance {
  dir: string;
  formats: TraceFormats;
  cpus: string[];
  pageSize: number;
  bufferKb: number;
}

interface Watch {
  /** CLOCK_MONOTONIC at begin (the trace clock is `mono`). */
  since: bigint;
  droppedAtStart: number;
}

/** The driver's trace instance and the events of the runs going on. */
export class ExecTraceHost {
  private instance: Promise<Instance> | null = null;
  private readonly active = new Set<Watch>();
  private kept: TraceEvent[] = [];
  private overflow = 0;
  private problems: string[] = [];
  private draining: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private idle: NodeJS.Timeout | null = null;
  private removing: Promise<void> | null = null;
  private swept = false;
  private dropped = 0;

  constructor(
    private readonly driverInstance: string,
    private readonly log: DriverLogger,
  ) {}

  private prepare(): Promise<Instance> {
    this.instance ??= (async () => {
      const root = await findOrMountTracefs(this.log);
      const formats = await readEventFormats(root);
      if (!this.swept) await this.sweep(root);
      this.swept = true;
      const dir = path.join(root, 'instances', `orch-${this.driverInstance}`);
      await fs.mkdir(dir).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
      const w = (file: string, value: string) => fs.writeFile(path.join(dir, file), value);
      await w('tracing_on', '0');
      await w('trace_clock', 'mono');
      await w('options/overwrite', '0');
      await w('options/event-fork', '1');
      await w('set_event_pid', String(process.pid));
      for (const e of ['sched_process_fork', 'sched_process_exec', 'sched_process_exit']) await w(`events/sched/${e}/enable`, '1');
      const cpus = (await fs.readdir(path.join(dir, 'per_cpu'))).filter((n) => /^cpu\d+$/.test(n));
      const pageSize = Number((await fs.readFile(path.join(dir, 'buffer_subbuf_size_kb'), 'utf8').catch(() => '4')).trim()) * 1024 || 4096;
      const bufferKb = Number(/^\d+/.exec(await fs.readFile(path.join(dir, 'buffer_size_kb'), 'utf8'))?.[0] ?? 1408);
      return { dir, formats, cpus, pageSize, bufferKb };
    })();
    this.instance.catch(() => (this.instance = null)); // said in the audit; tried again next run
    return this.instance;
  }

  /** Instances that dead drivers left. */
  private async sweep(root: string): Promise<void> {
    for (const name of await fs.readdir(path.join(root, 'instances'))) {
      const m = INSTANCE_NAME.exec(name);
      if (!m || instanceStatus(m[1]) !== 'dead') continue;
      await fs.rmdir(path.join(root, 'instances', name)).catch((err: Error) => this.log.warn({ name, err: err.message }, 'security audit: cannot remove a dead trace instance'));
    }
  }

  /** Starts recording for one run (before its sandbox is spawned); `finish` gives its execs. */
  async begin(): Promise<{ finish: (rootPid: number | undefined) => Promise<ExecTraceResult>; cancel: () => void }> {
    if (this.idle) clearTimeout(this.idle);
    this.idle = null;
    if (this.removing) await this.removing;
    const inst = await this.prepare();
    const watch: Watch = { since: process.hrtime.bigint(), droppedAtStart: this.dropped };
    this.active.add(watch);
    if (this.active.size === 1) {
      try {
        await fs.writeFile(path.join(inst.dir, 'tracing_on'), '1');
      } catch (err) {
        this.active.delete(watch);
        throw err;
      }
      this.timer ??= setInterval(() => void this.drain(), DRAIN_EVERY_MS).unref();
    }
    let ended = false;
    const end = async () => {
      if (ended) return;
      ended = true;
      this.active.delete(watch);
      if (this.active.size === 0) {
        if (this.timer) clearInterval(this.timer);
        this.timer = null;
        await fs.writeFile(path.join(inst.dir, 'tracing_on'), '0').catch((err: Error) => this.log.warn({ err: err.message }, 'security audit: cannot switch tracing off'));
        if (this.active.size === 0 && !this.idle) {
          this.idle = setTimeout(() => {
            this.idle = null;
            this.removing = this.removeInstance().finally(() => (this.removing = null));
          }, IDLE_MS).unref();
        }
      }
    };
    return {
      finish: async (rootPid) => {
        // The run's processes are dead: whatever they did is in the buffer. Read it, then stop.
        await this.drain();
        const result = this.attribute(watch, rootPid, inst.bufferKb);
        await end();
        this.prune();
        return result;
      },
      cancel: () => {
        void end().then(() => this.prune());
      },
    };
  }

  /** One read of every CPU's buffer, after any read going on (reads are consumed: one at a time). */
  private drain(): Promise<void> {
    this.draining = this.draining.then(async () => {
      const inst = await this.instance;
      if (!inst) return;
      const got: TraceEvent[] = [];
      let dropped = 0;
      for (const cpu of inst.cpus) {
        const stats = await fs.readFile(path.join(inst.dir, 'per_cpu', cpu, 'stats'), 'utf8').catch(() => '');
        dropped += Number(/^dropped events: (\d+)$/m.exec(stats)?.[1] ?? 0) + Number(/^overrun: (\d+)$/m.exec(stats)?.[1] ?? 0);
        if (Number(/^entries: (\d+)$/m.exec(stats)?.[1] ?? 1) === 0) continue;
        const problem = await readCpu(path.join(inst.dir, 'per_cpu', cpu, 'trace_pipe_raw'), inst, got);
        if (problem) this.problems.push(`${cpu}: ${problem}`);
      }
      this.dropped = dropped;
      const room = MAX_KEPT - this.kept.length;
      if (got.length > room) this.overflow += got.length - Math.max(0, room);
      for (const e of got.slice(0, Math.max(0, room))) this.kept.push(e);
    });
    return this.draining.catch((err: Error) => {
      this.problems.push(err.message);
    });
  }

  /** The execs of the descendants of `rootPid` (itself included) since the run began, in order. */
  private attribute(watch: Watch, rootPid: number | undefined, bufferKb: number): ExecTraceResult {
    const events = this.kept.filter((e) => e.ts >= watch.since).sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0));
    const out: ExecEvent[] = [];
    if (rootPid !== undefined) {
      const live = new Set<number>([rootPid]);
      for (const e of events) {
        if (e.kind === 'fork') {
          if (live.has(e.parentPid)) live.add(e.childPid);
        } else if (e.kind === 'exec') {
          if (live.has(e.pid) || live.has(e.oldPid)) {
            out.push(e);
            live.add(e.pid);
          }
        } else if (e.pid !== rootPid) live.delete(e.pid);
      }
    }
    const problems = [...new Set(this.problems)].slice(0, 3);
    if (this.overflow) problems.push(`${this.overflow} events beyond the ${MAX_KEPT} kept were not looked at`);
    return { events: out, dropped: Math.max(0, this.dropped - watch.droppedAtStart), bufferKb, problem: problems.length ? problems.join('; ') : null };
  }

  /** Drops what no run going on can need. */
  private prune(): void {
    if (this.active.size === 0) {
      this.kept = [];
      this.overflow = 0;
      this.problems = [];
      return;
    }
    let since = -1n;
    for (const w of this.active) if (since < 0n || w.since < since) since = w.since;
    this.kept = this.kept.filter((e) => e.ts >= since);
  }

  /** Removes the instance (the driver's close). */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.idle) clearTimeout(this.idle);
    this.idle = null;
    if (this.removing) await this.removing;
    await this.removeInstance();
  }

  private async removeInstance(): Promise<void> {
    const pending = this.instance;
    this.instance = null;
    const inst = pending ? await pending.catch(() => null) : null;
    await this.draining.catch(() => undefined);
    if (inst) {
      await fs.rmdir(inst.dir).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') this.log.warn({ dir: inst.dir, err: err.message }, 'security audit: cannot remove the trace instance');
      });
    }
  }
}

/** Reads one CPU's buffer until it is empty (bounded by its size: read pages are consumed). */
async function readCpu(file: string, inst: Instance, out: TraceEvent[]): Promise<string | null> {
  const handle = await fs.open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  const problems: string[] = [];
  try {
    const buf = Buffer.alloc(inst.pageSize);
    for (let read = 0; read <= (inst.bufferKb * 1024) / inst.pageSize + 2; read++) {
      let n: number;
      try {
        ({ bytesRead: n } = await handle.read(buf, 0, inst.pageSize, null));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') problems.push((err as Error).message);
        break;
      }
      if (n === 0) break;
      const problem = parsePage(buf.subarray(0, n), inst.formats, out);
      if (problem) problems.push(problem);
    }
  } finally {
    await handle.close();
  }
  return problems.length ? problems[0] : null;
}
