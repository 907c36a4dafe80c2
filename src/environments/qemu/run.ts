// One test run in a warm VM: the run's files written into the VM's job dir (shared over 9p: the test's
// /work and its control dir /run/orchestrator, the same runner script as the container driver's), RUN
// sent to the agent, stdout and stderr read as the agent's files grow (live chunks, byte-exact), KILL
// at the timeout or on abort, DONE awaited. No DONE (a VM that stopped, panicked or hangs) is an
// InfrastructureError, never a test's failure: the driver then kills the VM.

import { constants as fsConstants, promises as fs, type Stats } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { bestEffort } from '../../infra/best-effort';
import { pathExists } from '../../infra/fs-utils';
import type { CgroupStats } from '../cgroups/run-cgroup';
import { InfrastructureError, METRICS_FILE_ENV, type CollectedFile, type RunOutcome, type RunSpec } from '../driver';
import { MetricLineScanner } from '../reported-metrics';
import { DEFAULT_MAX_LOG_BYTES, endRunLogs, openRunLogs, serviceLogArtifactName, type RunLogs } from '../run-logs';
import { collectArtifacts, compileArtifactPattern } from '../container/artifacts';
import { copyTree } from '../container/bundle-lowers';
import { sandboxEnv } from '../container/bwrap-args';
import type { DriverLogger } from '../container/image';
import { decodeExit, emptyOutcome } from '../container/exit-status';
import { readSmallRegularFile, writeNewFile } from '../container/host-files';
import { OutputCapture } from '../container/output-capture';
import { collectRunMetrics, SANDBOX_METRICS_FILE } from '../container/run-metrics';
import { SCRIPT_NAME, STATUS_FILE, buildDirectCommand, buildRunnerScript, parseRunnerStatus, serviceFiles, serviceLogName, shQuote } from '../container/runner-script';
import type { SandboxUser } from '../container/sandbox-user';
import { writeFiles } from '../container/work-inputs';
import { relativePathProblem } from '../../domain/work-files';
import { GUEST_RESERVED_MB, OUT_FILES } from './guest-agent';
import type { Vm } from './vm';
import { onAbort } from '../../infra/abort';

/** How often the growing stdout and stderr files are read while a test runs. */
const POLL_MS = 25;
/** How long past its timeout (or an abort) a run may take to end before its VM counts as hung. */
const KILL_GRACE_MS = 15_000;
/** How long the agent may take to say a run started. */
const START_MS = 15_000;

export interface QemuRunHost {
  logger: DriverLogger;
  owner: SandboxUser | null;
}

export interface VmState {
  id: string;
  memoryMb: number;
  pids: number;
  vm: Vm;
  /** The job dir (host path): in/ (the run's /work), ctl/ (its control files), out/ (what it gave back). */
  jobDir: string;
  seq: number;
  active: { kill(): void; done: Promise<unknown> } | null;
  /** Host path of the root filesystem the VM's disk was made of. */
  rootfs: string;
  /** Called when a run's script has started (the driver then boots the next spare VM). */
  whenStarted?: () => void;
}

/**
 * A file the guest writes, read from `offset` on through a descriptor the host opened while the VM was
 * frozen (openOutFiles): whatever the guest later does to the names in the job dir, the host reads
 * that file and nothing else.
 */
class GrowingFile {
  offset = 0;
  constructor(private readonly h: fs.FileHandle) {}
  async readNew(onChunk: (b: Buffer) => void): Promise<void> {
    const buf = Buffer.alloc(256 * 1024);
    for (;;) {
      const { bytesRead } = await this.h.read(buf, 0, buf.length, this.offset);
      if (bytesRead === 0) return;
      this.offset += bytesRead;
      onChunk(Buffer.from(buf.subarray(0, bytesRead)));
    }
  }
  close(): Promise<void> {
    return this.h.close();
  }
}

/**
 * out/ made afresh with the files the agent writes while the run goes (stdout, stderr, started),
 * owned by the sandbox user, each opened here for reading. Called with the VM frozen.
 */
async function openOutFiles(s: VmState, owner: SandboxUser | null): Promise<{ stdout: GrowingFile; stderr: GrowingFile; started: GrowingFile }> {
  const out = path.join(s.jobDir, 'out');
  await fs.rm(out, { recursive: true, force: true });
  await fs.mkdir(out, { mode: 0o755 });
  if (owner) await fs.lchown(out, owner.uid, owner.gid);
  const open = async (rel: string) => {
    const file = path.join(s.jobDir, rel);
    const h = await fs.open(file, fsConstants.O_RDWR | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, 0o644);
    if (owner) await h.chown(owner.uid, owner.gid);
    return new GrowingFile(h);
  };
  return { stdout: await open(OUT_FILES.stdout), stderr: await open(OUT_FILES.stderr), started: await open(OUT_FILES.started) };
}

/**
 * What the run gave back (out/), taken out of the guest's reach: with the VM frozen, renamed into a
 * root-owned directory beside the job dir (if it is a directory: a link there is refused). The host
 * then reads it at leisure; nothing in it can change any more. Returns its path, or null.
 */
async function takeOut(s: VmState, n: number): Promise<string | null> {
  const taken = path.join(path.dirname(s.jobDir), 'taken');
  await fs.mkdir(taken, { recursive: true, mode: 0o700 });
  const dest = path.join(taken, `out-${n}`);
  await fs.rm(dest, { recursive: true, force: true });
  return s.vm.frozen(async () => {
    const out = path.join(s.jobDir, 'out');
    const st = await fs.lstat(out).catch(() => null);
    if (!st?.isDirectory()) return null;
    await fs.rename(out, dest);
    return dest;
  });
}

function parseStats(text: string | null): { rc: number | null; stats: CgroupStats } {
  const v = new Map<string, number>();
  for (const line of (text ?? '').split('\n')) {
    const m = /^([a-z_]+) (\d{1,18})$/.exec(line.trim());
    if (m) v.set(m[1], Number(m[2]));
  }
  const ms = (k: string) => (v.has(k) ? Math.round(v.get(k)! / 1000) : null);
  return {
    rc: v.get('rc') ?? null,
    stats: {
      cpuTimeMs: ms('cpu_usec'), userCpuMs: ms('user_usec'), systemCpuMs: ms('system_usec'),
      memoryBytes: null, peakMemoryBytes: v.get('peak_bytes') ?? null,
      oomKills: v.get('oom_kill') ?? null, pidsLimitHits: v.get('pids_max') ?? null,
    },
  };
}

/** Bytes of a failed VM's serial console log kept (its end). */
const CONSOLE_LOG_BYTES = 1024 * 1024;

/** The end of the VM's serial console as `console.log` in the run's artifact dir: a LOG of the failed attempt. */
async function keepConsoleLog(vm: Vm, artifactDir: string): Promise<CollectedFile | null> {
  const h = await fs.open(vm.consoleLog, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  try {
    const size = (await h.stat()).size;
    const start = Math.max(0, size - CONSOLE_LOG_BYTES);
    const buf = Buffer.alloc(size - start);
    await h.read(buf, 0, buf.length, start);
    await fs.mkdir(artifactDir, { recursive: true });
    const dest = path.join(artifactDir, 'console.log');
    await fs.writeFile(dest, buf);
    return { name: 'console.log', kind: 'LOG', path: dest, sizeBytes: buf.length };
  } finally {
    await h.close();
  }
}

/** The work dir's inputs (the bundle, then the files), the script and the control dir of one run. */
async function prepare(host: QemuRunHost, s: VmState, spec: RunSpec, seq: number, imageRootfs: string): Promise<void> {
  const inputs = spec.inputs;
  for (const f of inputs?.files ?? []) {
    const problem = relativePathProblem(f.path);
    if (problem) throw new InfrastructureError(`a run file's path ${JSON.stringify(f.path.slice(0, 100))} ${problem}`);
  }
  const inDir = path.join(s.jobDir, 'in');
  const ctl = path.join(s.jobDir, 'ctl');
  for (const d of [inDir, ctl, path.join(s.jobDir, 'out')]) await fs.rm(d, { recursive: true, force: true });
  // readable by QEMU (the sandbox user) whatever the umask (the orchestrator's is 077)
  await mkdirExactly(ctl, 0o755);
  if (inputs?.bundleDir) await copyTree(inputs.bundleDir, inDir, null);
  else await mkdirExactly(inDir, 0o755);
  if (inputs?.files.length) await writeFiles(inDir, inputs.bundleDir ?? null, inputs.files, null, Boolean(inputs.bundleDir));
  const shebang = spec.script.startsWith('#!');
  const scriptPath = path.join(inDir, SCRIPT_NAME);
  await fs.rm(scriptPath, { force: true });
  await writeNewFile(scriptPath, spec.script, shebang ? 0o755 : 0o644);
  await writeNewFile(path.join(ctl, 'collect'), collectRoots(spec.artifactPaths).map((p) => `${p}\n`).join(''), 0o644);
  const env = sandboxEnv({ ...spec.env, [METRICS_FILE_ENV]: SANDBOX_METRICS_FILE });
  const envLines = Object.entries(env).map(([k, v]) => `export ${k}=${shQuote(v)}`);
  await writeNewFile(path.join(ctl, 'env.sh'), `${envLines.join('\n')}\n`, 0o644);
  // Without services and with perl in the image, perl is the command (no runner shell: one exec less,
  // ~100 ms under TCG); it says `started` on descriptor 4, as the runner does.
  const direct = spec.services.length === 0 && (await pathExists(path.join(imageRootfs, 'usr/bin/perl')));
  const command = direct ? buildDirectCommand(shebang).map(shQuote).join(' ') : '/bin/sh /run/orchestrator/runner.sh';
  await writeNewFile(path.join(ctl, 'start.sh'), `. /run/orchestrator/env.sh\ncd /work || exit 125\nexec ${command}\n`, 0o644);
  // services' ready budget: the run's timeout less a margin wide enough for a few TCG-slow polls
  const margin = Math.min(3000, Math.max(1000, spec.timeoutMs * 0.2));
  await writeNewFile(
    path.join(ctl, 'runner.sh'),
    buildRunnerScript({ services: spec.services, shebang, readyBudgetMs: Math.max(0, Math.round(spec.timeoutMs - margin)) }),
    0o644,
  );
  for (const f of serviceFiles(spec.services)) await writeNewFile(path.join(ctl, f.name), f.text, 0o644);
  const memBytes = Math.max(32, s.memoryMb - GUEST_RESERVED_MB) * 1024 * 1024;
  await writeNewFile(path.join(ctl, 'limits'), `${memBytes} ${s.pids}\n`, 0o644);
  // out/, where QEMU (the sandbox user) writes what the guest gives back: openOutFiles
  void seq;
}

async function mkdirExactly(dir: string, mode: number): Promise<void> {
  await fs.mkdir(dir, { mode });
  await fs.chmod(dir, mode);
}

/**
 * The work-dir paths the guest copies back: each valid pattern's part before its first wildcard (its
 * directory when a wildcard is in the last part), or the whole work dir. The host then applies the
 * patterns themselves (collectArtifacts).
 */
export function collectRoots(patterns: string[]): string[] {
  const roots = new Set<string>();
  for (const p of patterns) {
    if (!compileArtifactPattern(p).ok) continue;
    const segments = p.trim().replace(/^(\.\/)+/, '').split('/').filter((x) => x !== '' && x !== '.');
    const literal: string[] = [];
    for (const seg of segments) {
      if (/[*?]/.test(seg)) break;
      literal.push(seg);
    }
    if (literal.some((x) => /[\n\\]/.test(x))) continue; // one path a line, no escapes for tar
    roots.add(literal.length ? literal.join('/') : '.');
  }
  return roots.has('.') ? ['.'] : [...roots];
}

export async function runInVm(host: QemuRunHost, s: VmState, spec: RunSpec): Promise<RunOutcome> {
  const log = host.logger;
  if (spec.signal?.aborted) return emptyOutcome({ aborted: true });
  const vm = s.vm;
  if (!vm.alive) throw new InfrastructureError(`the VM of environment ${s.id} is not running`);
  s.seq += 1;
  const n = s.seq;
  let files: Awaited<ReturnType<typeof openOutFiles>>;
  try {
    files = await vm.frozen(async () => {
      await prepare(host, s, spec, n, s.rootfs);
      return openOutFiles(s, host.owner);
    });
  } catch (err) {
    if (err instanceof InfrastructureError) throw err;
    throw new InfrastructureError(`cannot prepare the job dir of ${s.id}: ${(err as Error).message}`, { cause: err });
  }
  let taken: string | null = null;
  let logs: RunLogs;
  try {
    logs = await openRunLogs(spec.artifactDir, spec.maxLogBytes ?? DEFAULT_MAX_LOG_BYTES);
  } catch (err) {
    await bestEffort(log, 'closing the output files of the run', () => Promise.all([files.stdout.close(), files.stderr.close(), files.started.close()]));
    throw new InfrastructureError(`cannot write the logs of the run in ${spec.artifactDir}: ${(err as Error).message}`, { cause: err });
  }
  const capture = { stdout: new OutputCapture(spec.maxOutputBytes), stderr: new OutputCapture(spec.maxOutputBytes) };
  const stdoutMetrics = new MetricLineScanner();
  const onChunk = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
    if (stream === 'stdout') stdoutMetrics.push(chunk);
    logs[stream].write(chunk);
    const kept = capture[stream].push(chunk);
    if (kept.length > 0 && spec.onOutput) {
      try {
        spec.onOutput(stream, kept);
      } catch (err) {
        log.warn({ testId: spec.testId, err: (err as Error).message }, 'onOutput callback threw');
      }
    }
  };
  let reading = Promise.resolve();
  const readAll = () => {
    reading = reading.then(async () => {
      if (!timer) await startedFile.readNew(() => startClock());
      await files.stdout.readNew(onChunk('stdout'));
      await files.stderr.readNew(onChunk('stderr'));
    });
    return reading;
  };

  let timedOut = false;
  let aborted = false;
  const kill = () => vm.send(`KILL ${n}`);
  const started = vm.expect(`STARTED ${n}`, START_MS);
  const failed = vm.expect(`FAILED ${n}`, spec.timeoutMs + START_MS + KILL_GRACE_MS).then(() => {
    throw new InfrastructureError(`the agent of ${s.id} could not copy the run's files into the VM`);
  });
  const done = vm.expect(`DONE ${n}`, spec.timeoutMs + START_MS + KILL_GRACE_MS);
  for (const p of [started, failed, done]) p.catch(() => undefined);
  vm.send(`RUN ${n}`);
  let t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  let hang: NodeJS.Timeout | undefined;
  let killAgain: NodeJS.Timeout | undefined;
  let finished = false;
  let offAbort = () => undefined as void;
  let startClock = () => undefined as void;
  const startedFile = files.started;
  const deadline = new Promise<never>((_, reject) => {
    // killed but not ended: the VM hangs
    const stuck = () => {
      hang ??= setTimeout(() => reject(new InfrastructureError(`the VM of ${s.id} did not end the run ${KILL_GRACE_MS} ms after it was killed`)), KILL_GRACE_MS);
    };
    const stop = (why: 'timeout' | 'abort') => {
      if (finished) return;
      if (why === 'timeout') timedOut = true;
      else if (!timedOut) aborted = true;
      kill();
      // again until the run ends: a KILL that came before the agent made the run's cgroup found nothing
      killAgain ??= setInterval(kill, 500);
      killAgain.unref();
      stuck();
    };
    // the timeout counts from the runner's start (it writes `started` first), as a container's from
    // its sandbox's: not the VM's setup of the run; at most START_MS after the agent took the run
    startClock = () => {
      if (finished || timer || timedOut || aborted) return;
      t0 = performance.now();
      timer = setTimeout(() => stop('timeout'), Math.max(1, spec.timeoutMs));
      s.whenStarted?.();
    };
    void started.then(() => setTimeout(startClock, START_MS).unref(), () => undefined);
    s.active = { kill: () => stop('abort'), done };
    offAbort = onAbort(spec.signal, () => stop('abort'));
  });
  deadline.catch(() => undefined);
  const poll = setInterval(() => void readAll().catch((err: Error) => log.warn({ envId: s.id, err: err.message }, 'reading the output of a run failed')), POLL_MS);
  try {
    await Promise.race([started, failed, deadline]);
    await Promise.race([done, failed, deadline]);
    const durationMs = Math.round(performance.now() - t0);
    clearInterval(poll);
    await readAll();
    taken = await takeOut(s, n);
    if (!taken) throw new InfrastructureError(`the VM of ${s.id} gave back no out/ directory`);
    const outCtl = path.join(taken, 'ctl');
    const statsText = await readSmallRegularFile(path.join(taken, path.basename(OUT_FILES.stats)), log);
    const { rc, stats } = parseStats(statsText);
    const statusText = await readSmallRegularFile(path.join(outCtl, STATUS_FILE), log);
    const status = statusText === null ? null : parseRunnerStatus(statusText);
    const { exitCode, signal } = decodeExit(status, { code: rc, signal: null }, { timedOut, aborted });
    const ended = await endRunLogs(
      logs,
      spec.artifactDir,
      spec.services.map((svc, i) => ({ source: path.join(outCtl, serviceLogName(i)), name: serviceLogArtifactName(svc.name, i) })),
      (name, error) => log.error({ testId: spec.testId, log: name, err: error }, 'a log of the run could not be written in full'),
    );
    const collected = await collectArtifacts({
      workDir: path.join(taken, 'work'),
      artifactDir: spec.artifactDir,
      patterns: spec.artifactPaths,
      exclude: [SCRIPT_NAME],
      limits: spec.artifactLimits,
      onRejected: (pattern, reason) => log.warn({ testId: spec.testId, pattern, reason }, 'artifact pattern rejected'),
    }).catch((err: Error) => {
      throw new InfrastructureError(`cannot collect artifacts: ${err.message}`, { cause: err });
    });
    const metrics = await collectRunMetrics({ stats, statusText, stdoutMetrics, ctlDir: outCtl, log, testId: spec.testId });
    const outcome: RunOutcome = {
      exitCode,
      signal,
      timedOut,
      aborted,
      oomKilled: (stats.oomKills ?? 0) > 0,
      pidsLimitHit: (stats.pidsLimitHits ?? 0) > 0,
      stdout: capture.stdout.text,
      stderr: capture.stderr.text,
      stdoutBytes: capture.stdout.bytes,
      stderrBytes: capture.stderr.bytes,
      outputTruncated: capture.stdout.truncated || capture.stderr.truncated,
      durationMs,
      cpuTimeMs: stats.cpuTimeMs,
      peakMemoryBytes: stats.peakMemoryBytes,
      ...metrics,
      voluntaryContextSwitches: null,
      involuntaryContextSwitches: null,
      readBytes: null,
      writeBytes: null,
      files: [...ended.files, ...collected.files],
      artifactNotes: [...ended.notes, ...collected.notes],
    };
    log.info({ envId: s.id, testId: spec.testId, attempt: spec.attempt, exitCode, signal, timedOut, aborted, durationMs }, 'qemu run finished');
    return outcome;
  } catch (err) {
    vm.kill(); // whatever it was doing, this VM cannot be trusted with another test
    await vm.stop();
    const e = err instanceof InfrastructureError ? err : new InfrastructureError(`run in VM ${s.id} failed: ${(err as Error).message}`, { cause: err });
    const kept = await bestEffort(log, 'keeping the console log of a failed VM', () => keepConsoleLog(vm, spec.artifactDir), null);
    if (kept) e.files.push(kept);
    throw e;
  } finally {
    clearInterval(poll);
    clearTimeout(timer);
    clearTimeout(hang);
    clearInterval(killAgain);
    finished = true;
    offAbort();
    for (const m of [`STARTED ${n}`, `FAILED ${n}`, `DONE ${n}`]) vm.forget(m);
    s.active = null;
    await bestEffort(log, 'closing the logs of the run', () => Promise.all([logs.stdout.close(), logs.stderr.close()]));
    await bestEffort(log, 'closing the output files of the run', () => Promise.all([files.stdout.close(), files.stderr.close(), files.started.close()]));
    const t = taken;
    if (t) await bestEffort(log, 'removing what the run gave back', () => fs.rm(t, { recursive: true, force: true }));
  }
}
