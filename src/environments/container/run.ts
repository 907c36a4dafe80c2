// One test run in a container environment: the run's files in the control dir, its seccomp filter
// and cgroup, the sandbox process supervised to its end (timeout, abort, output), the exit decoded
// and the artifacts collected.
//
// Host process tree of one run:
//   node ─ sh (join wrapper: writes $$ to the run's cgroup.procs files, then execs)
//          → [driver runs as root: setpriv, dropping to the sandbox host uid/gid, then execs] → bwrap
//          └ [new namespaces] runner (pid 1: wait status, reaps orphans) ─ the script
//            with services: runner (pid 1, reaps) ─ sh runner.sh → runner (wait status) ─ the script
//            the runner: the native one (native-runner.ts), else perl in the image; neither: bwrap's
//            init (pid 1) ─ sh runner.sh ─ the script

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, lstatSync, openSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { bestEffort } from '../../infra/best-effort';
import { phaseTimer, type PhaseTimer } from '../../infra/phase-timer';
import type { CpuReservation } from '../cgroups/cpu-reservations';
import { RunCgroup } from '../cgroups/run-cgroup';
import { InfrastructureError, METRICS_FILE_ENV, type RunOutcome, type RunSpec } from '../driver';
import { MetricLineScanner } from '../reported-metrics';
import { DEFAULT_MAX_LOG_BYTES, endRunLogs, openRunLogs, serviceLogArtifactName, type RunLogs } from '../run-logs';
import { reserveDedicatedCpus } from './dedicated-cpus';
import { HARDENED_TMPDIR, SANDBOX_CTL_DIR, buildBwrapArgs, bwrapEnvData, isValidEnvName } from './bwrap-args';
import type { ContainerHost, EnvState } from './env-state';
import { decodeExit, emptyOutcome, type SandboxExit } from './exit-status';
import { readSmallRegularFileSync } from './host-files';
import { buildHint, checkImage } from './image';
import { OutputCapture } from './output-capture';
import { collect, prepareRunFiles } from './run-files';
import { collectRunMetrics, SANDBOX_METRICS_FILE } from './run-metrics';
import { STARTED_FD, STATUS_FILE, buildDirectCommand, buildReapedRunnerCommand, parseRunnerStatus, serviceLogName } from './runner-script';
import { ENV_FD, SECCOMP_FD, sandboxCommand } from './sandbox-command';
import { SECURITY_AUDIT_LOG, type AuditSession } from './security-audit';
import { isNearlyFull } from './work-fs';
import { onAbort } from '../../infra/abort';

/** The root filesystem of a run: the version the worker chose, else the shape's image as it is now. */
async function runRootfs(imageDir: string, shapeImage: string, spec: RunSpec): Promise<string> {
  if (spec.image) {
    // lstat: a link in an image points into the image, not at the host's files; synchronous: a lookup
    // in the dentry cache, where an await costs a thread-pool round trip
    let sh = false;
    if (path.isAbsolute(spec.image.rootfs)) {
      try {
        sh = lstatSync(path.join(spec.image.rootfs, 'bin/sh')) !== null;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err; // EACCES, EIO: not an answer to "is the image here"
      }
    }
    if (!sh) {
      throw new InfrastructureError(`image ${spec.image.name} (${spec.image.digest}) is not on this host at ${spec.image.rootfs}`);
    }
    return spec.image.rootfs;
  }
  const image = await checkImage(imageDir, shapeImage);
  if (!image.ok) throw new InfrastructureError(`${image.problem}; ${buildHint(imageDir, shapeImage)}`);
  return image.paths.rootfs;
}

export function cgroupSafe(id: string): string {
  return id.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 100);
}

/** Runs `spec` in the environment of `state` (which runs nothing now); see ContainerDriver.run. */
export async function runInSandbox(host: ContainerHost, state: EnvState, spec: RunSpec): Promise<RunOutcome> {
  const env = state.handle;
  const log = host.logger;
  const started = performance.now();
  if (spec.signal?.aborted) return emptyOutcome({ aborted: true });
  const phases = phaseTimer(host.phaseTimings, 'run.total');

  const rootfs = await runRootfs(host.imageDir, env.shape.image, spec);

  const shebang = spec.script.startsWith('#!');
  const hardened = spec.isolation === 'hardened';
  const hasPerl = existsSync(path.join(rootfs, 'usr/bin/perl'));
  const native = await host.nativeRunner();
  // Without services the runner (native, or perl in the image) is the sandbox's command (no runner shell).
  const direct = spec.services.length === 0 && (native !== null || hasPerl);
  phases.lap('run.image');
  await prepareRunFiles(host, state, spec, { shebang, direct, hardened });
  phases.lap('run.files');
  for (const k of Object.keys(spec.env)) {
    if (!isValidEnvName(k)) log.warn({ envId: env.id, testId: spec.testId, name: k }, 'invalid environment variable name dropped');
  }
  // hardened runs have a read-only /tmp: their TMPDIR is in /work (the test may still set its own)
  const runEnv = { ...(hardened ? { TMPDIR: HARDENED_TMPDIR } : {}), ...spec.env, [METRICS_FILE_ENV]: SANDBOX_METRICS_FILE };

  // The run's name (its cgroup's); a performance run's CPUs are reserved in it, host-wide, first.
  state.runSeq += 1;
  const name = `${cgroupSafe(env.id)}-${spec.attempt}-${state.runSeq}`;
  const dedicated = await reserveDedicatedCpus(host, state, spec, name);
  phases.lap('run.cpus');
  if (dedicated.aborted || spec.signal?.aborted) {
    await dedicated.reservation?.release();
    return emptyOutcome({ aborted: true });
  }
  // The complete logs, written as the output arrives (run-logs.ts).
  let logs: RunLogs;
  try {
    logs = await openRunLogs(spec.artifactDir, spec.maxLogBytes ?? DEFAULT_MAX_LOG_BYTES);
  } catch (err) {
    const r = dedicated.reservation;
    if (r) await bestEffort(log, 'giving back dedicated CPUs', () => r.release());
    throw new InfrastructureError(`cannot write the logs of the run in ${spec.artifactDir}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return await runReserved(host, state, spec, { rootfs, shebang, direct, hardened, hasPerl, native, name, runEnv, reservation: dedicated.reservation, started, phases, logs });
  } finally {
    await bestEffort(log, 'closing the logs of the run', () => Promise.all([logs.stdout.close(), logs.stderr.close()]));
    const r = dedicated.reservation;
    if (r) await bestEffort(log, 'giving back dedicated CPUs', () => r.release());
    phases.lap('run.cpus');
    const timings = phases.done();
    if (timings) log.info({ envId: env.id, testId: spec.testId, phases: timings }, 'container run phases');
  }
}

/** The rest of runInSandbox, with the run's CPUs reserved (when it is a performance run). */
async function runReserved(
  host: ContainerHost,
  state: EnvState,
  spec: RunSpec,
  o: {
    rootfs: string; shebang: boolean; direct: boolean; hardened: boolean; hasPerl: boolean; native: string | null; name: string; runEnv: Record<string, string>;
    reservation: CpuReservation | null; started: number; phases: PhaseTimer; logs: RunLogs;
  },
): Promise<RunOutcome> {
  const env = state.handle;
  const log = host.logger;
  const { shebang, direct, hardened, hasPerl, native, name, runEnv, reservation, started, phases, logs } = o;
  // A runner that reaps orphans is the PID namespace's pid 1: the native one, or perl in the image.
  const reaper = native !== null || hasPerl;

  // Every run gets a seccomp filter: the baseline, or the strict one for hardened isolation.
  let seccompFd: number | undefined;
  const file = await host.seccompFilterFile(spec.isolation === 'hardened' ? 'strict' : 'baseline');
  if (file) seccompFd = openSync(file, 'r');
  else host.warnNoSeccomp();
  phases.lap('run.seccomp');

  // Per-run cgroup; a run without dedicated CPUs also joins the shared cpuset group, kept off them.
  let cgroup: RunCgroup | null = null;
  let sharedCpuset: string | null = null;
  const layout = host.cgroupLayout();
  if (layout) {
    try {
      cgroup = await RunCgroup.create(await layout, host.cgroupParent, name, {
        memoryBytes: env.shape.memoryMb * 1024 * 1024,
        cpus: env.shape.cpus,
        pids: env.shape.pids,
        cpuset: reservation ? reservation.cpus : undefined,
      }, log);
      if (!reservation) sharedCpuset = await (await host.cpuReservations())!.sharedProcsFile();
    } catch (err) {
      if (seccompFd !== undefined) closeSync(seccompFd);
      const group = cgroup;
      if (group) await bestEffort(log, 'removing the cgroup of a sandbox that did not start', () => group.remove());
      state.strayGroups = true; // whatever the failure left, the next reset removes
      throw new InfrastructureError(`cannot create the cgroup of ${env.id}: ${(err as Error).message}`, { cause: err });
    }
  }
  phases.lap('run.cgroup');
  // SECURITY runs: what they are denied and what they execute (security-audit.ts; never fails).
  const audit: AuditSession | null = hardened ? await host.securityAuditor().begin({ imageHasPerl: hasPerl, withServices: spec.services.length > 0 }) : null;
  const auditFile = path.join(env.stateDir, SECURITY_AUDIT_LOG);
  phases.lap('run.audit');

  const bwrapArgs = buildBwrapArgs({
    rootfs: o.rootfs,
    workDir: state.workDir,
    ctlDir: state.ctlDir,
    env: runEnv,
    envFd: ENV_FD,
    command: [
      ...(audit?.commandPrefix ?? []),
      ...(direct ? buildDirectCommand(shebang, native !== null) : reaper ? buildReapedRunnerCommand(native !== null) : ['/bin/sh', `${SANDBOX_CTL_DIR}/runner.sh`]),
    ],
    asPid1: reaper,
    runner: native ?? undefined,
    disableUserns: true,
    seccompFd: seccompFd === undefined ? undefined : SECCOMP_FD,
    tmpSizeBytes: env.shape.memoryMb * 1024 * 1024,
    readOnly: hardened,
  });
  const { command, args, stdio } = sandboxCommand({
    seccompFd,
    procsFiles: [...(cgroup?.procsFiles ?? []), ...(sharedCpuset ? [sharedCpuset] : [])],
    loginuid: audit?.loginuid,
    exec: [...host.dropPrivileges(), host.bwrapPath, ...bwrapArgs],
  });
  phases.lap('run.args');

  const envData = bwrapEnvData(runEnv); // built before spawning: the audit's timing starts at the spawn
  const stdout = new OutputCapture(spec.maxOutputBytes);
  const stderr = new OutputCapture(spec.maxOutputBytes);
  const stdoutMetrics = new MetricLineScanner();
  let timedOut = false;
  let aborted = false;
  let child: ChildProcess;
  const t0 = performance.now();
  try {
    child = spawn(command, args, { stdio, env: {}, cwd: '/' });
  } catch (err) {
    if (cgroup) {
      const group = cgroup;
      await bestEffort(log, 'removing the cgroup of a sandbox that did not start', () => group.remove());
      state.strayGroups = true; // the next reset makes sure
    }
    if (audit) await audit.dispose();
    throw new InfrastructureError(`cannot start the sandbox: ${(err as Error).message}`, { cause: err });
  } finally {
    if (seccompFd !== undefined) closeSync(seccompFd);
  }
  phases.lap('run.spawn');
  let startedAt = 0;

  const killTree = () => {
    if (cgroup) void cgroup.kill().catch((err: Error) => log.warn({ envId: env.id, err: err.message }, 'cgroup kill failed'));
    child.kill('SIGKILL');
  };
  const onData = (stream: 'stdout' | 'stderr', capture: OutputCapture) => (chunk: Buffer) => {
    if (stream === 'stdout') stdoutMetrics.push(chunk); // all of it, also beyond what is kept
    // the complete log; a disk that lags pauses the pipe (the test then waits on its writes)
    const file = logs[stream];
    if (!file.write(chunk)) {
      const source = child[stream]!;
      source.pause();
      file.onDrain(() => source.resume());
    }
    const kept = capture.push(chunk);
    if (kept.length > 0 && spec.onOutput) {
      try {
        spec.onOutput(stream, kept);
      } catch (err) {
        log.warn({ testId: spec.testId, err: (err as Error).message }, 'onOutput callback threw');
      }
    }
  };
  // The environment: bwrap reads it to EOF before it does anything else. A wrapper or bwrap that
  // ends first (it then fails to start) makes this write fail: that is reported below, not here.
  child.stdin!.on('error', (err: Error) => log.info({ envId: env.id, err: err.message }, 'sandbox environment not read'));
  child.stdin!.end(envData);
  child.stdout!.on('data', onData('stdout', stdout));
  child.stderr!.on('data', onData('stderr', stderr));
  // Any byte on the start socket: the sandbox was set up and the runner ran.
  let sandboxStarted = false;
  const startSocket = child.stdio[STARTED_FD] as NodeJS.ReadableStream & { destroy(): void };
  startSocket.on('data', () => {
    if (!sandboxStarted) startedAt = performance.now();
    sandboxStarted = true;
  });
  startSocket.on('error', (err: Error) => log.warn({ envId: env.id, err: err.message }, 'start socket error'));
  const streamsClosed = Promise.all([
    new Promise<void>((r) => child.stdout!.once('close', () => r())),
    new Promise<void>((r) => child.stderr!.once('close', () => r())),
    new Promise<void>((r) => startSocket.once('close', () => r())),
  ]);
  const exited = new Promise<SandboxExit>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
  });

  const timer = setTimeout(() => {
    timedOut = true;
    killTree();
  }, Math.max(1, spec.timeoutMs));
  const offAbort = onAbort(spec.signal, () => {
    if (!timedOut) aborted = true;
    killTree();
  });
  state.active = {
    cgroup,
    startedAt: t0,
    lastCpu: null,
    abort: () => {
      aborted = true;
      killTree();
    },
    done: exited,
  };

  try {
    const exit = await exited;
    const exitedAt = performance.now();
    const durationMs = Math.round(exitedAt - t0);
    // spawn → the runner's first byte (wrapper, setpriv, bwrap's setup, perl) → exit (the script, perl's wait)
    if (startedAt) phases.lapAt('run.sandbox start', startedAt);
    phases.lapAt('run.script', exitedAt);
    clearTimeout(timer);
    offAbort();
    // The PID namespace died with bwrap; anything still in the group (a wrapper that never
    // exec'd, a process between namespaces) is killed too.
    if (cgroup) await cgroup.kill(3000);
    phases.lap('run.kill');
    await Promise.race([streamsClosed, new Promise((r) => setTimeout(r, 2000).unref())]);
    child.stdout!.destroy();
    child.stderr!.destroy();
    startSocket.destroy();
    phases.lap('run.streams');

    const stats = cgroup ? await cgroup.stats() : null;
    phases.lap('run.stats');
    // The control dir belongs to the sandbox user: never follow a link or block on a FIFO there.
    const statusText = readSmallRegularFileSync(path.join(state.ctlDir, STATUS_FILE), log);
    const status = statusText === null ? null : parseRunnerStatus(statusText);
    phases.lap('run.status');

    if (exit.error) {
      throw new InfrastructureError(`cannot start the sandbox (${command}): ${exit.error.message}`, { cause: exit.error });
    }
    if (!sandboxStarted && !timedOut && !aborted) {
      throw new InfrastructureError(
        `sandbox failed to start (exit ${exit.code ?? exit.signal}): ${stderr.text.trim().slice(-2000) || 'no output'}`,
      );
    }
    const { exitCode, signal } = decodeExit(status, exit, { timedOut, aborted });

    // Before collecting (which writes nothing there): did the test fill its disk?
    const diskFull = state.disk
      ? await isNearlyFull(state.disk.mountPoint).catch((err: Error) => {
          log.warn({ envId: env.id, err: err.message }, 'cannot read how full the disk is');
          return false;
        })
      : false;
    phases.lap('run.disk');
    if (audit) {
      await fs.rm(auditFile, { force: true });
      await audit.finish(auditFile, child.pid).catch((err: Error) => log.error({ testId: spec.testId, err: err.message }, 'security audit not written'));
    }
    // the complete logs before the test's own files (a file of the test by such a name is then left out)
    const ended = await endRunLogs(
      logs,
      spec.artifactDir,
      spec.services.map((svc, i) => ({ source: path.join(state.ctlDir, serviceLogName(i)), name: serviceLogArtifactName(svc.name, i) })),
      (name, error) => log.error({ testId: spec.testId, log: name, err: error }, 'a log of the run could not be written in full'),
    ).catch((err: Error) => {
      throw new InfrastructureError(`cannot write the logs of the run: ${err.message}`, { cause: err });
    });
    const collected = await collect(host, state, spec, audit ? auditFile : null);
    const files = [...ended.files, ...collected.files];
    const artifactNotes = [...ended.notes, ...collected.notes];
    phases.lap('run.artifacts');
    const metrics = await collectRunMetrics({ stats, statusText, stdoutMetrics, ctlDir: state.ctlDir, log, testId: spec.testId });
    phases.lap('run.metrics');

    const outcome: RunOutcome = {
      exitCode,
      signal,
      timedOut,
      aborted,
      oomKilled: (stats?.oomKills ?? 0) > 0,
      pidsLimitHit: (stats?.pidsLimitHits ?? 0) > 0,
      stdout: stdout.text,
      stderr: stderr.text,
      stdoutBytes: stdout.bytes,
      stderrBytes: stderr.bytes,
      outputTruncated: stdout.truncated || stderr.truncated,
      durationMs,
      cpuTimeMs: stats?.cpuTimeMs ?? null,
      peakMemoryBytes: stats?.peakMemoryBytes ?? null,
      ...metrics,
      files,
      diskFull,
      artifactNotes,
    };
    log.info(
      {
        envId: env.id,
        testId: spec.testId,
        attempt: spec.attempt,
        exitCode,
        signal,
        timedOut,
        aborted,
        oomKilled: outcome.oomKilled,
        durationMs,
        setupMs: Math.round(t0 - started),
        ...(reservation ? { dedicatedCpus: reservation.cpus } : {}),
      },
      'container run finished',
    );
    phases.lap('run.log');
    return outcome;
  } finally {
    clearTimeout(timer);
    offAbort();
    state.active = null;
    if (audit) {
      await audit.dispose();
      await bestEffort(log, 'removing the security audit file', () => fs.rm(auditFile, { force: true }));
    }
    if (cgroup) {
      await cgroup.remove().catch((err: Error) => {
        state.strayGroups = true; // the next reset tries again
        log.warn({ envId: env.id, err: err.message }, 'cgroup removal failed');
      });
    }
    phases.lap('run.cgroup remove');
  }
}
