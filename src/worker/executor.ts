// Runs one test job: takes an environment, moves the test to RUNNING (fenced by its attempt), runs the
// script through the pool's driver, records the result and hands the environment back. An environment
// fault is never a test failure: the environment is replaced and the test retried until its budget is
// spent, then ERROR.

import { mkdirSync, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/config';
import { dedicatedCpuSet } from '../domain/cpus';
import { afterInfrastructureFault, classifyRun, lastLine, withArtifactNotes } from '../domain/outcome';
import { rowOutput } from '../domain/output-text';
import { isTerminal, type TestStatus } from '../domain/status';
import type { PlansRepository } from '../db/plans.repository';
import type { RunResult, RunsRepository, StoredArtifact } from '../db/runs.repository';
import type { TestSpecRow, TestsRepository } from '../db/tests.repository';
import { InfrastructureError, type RunOutcome, type ServiceSpec } from '../environments/driver';
import type { Lease, ResourceManager } from '../environments/resource-manager';
import type { EventBus } from '../events/bus';
import type { ArtifactStore } from '../infra/artifact-store';
import type { RunTestPayload } from '../queue/catalog';
import { PlanRefresher, publishTestChanges } from '../services/transitions';
import { OutputPublisher } from './output-publisher';
import { resultView } from '../db/views';

/** Output kept in the result row; the exact capture goes to the artifact store when longer or not valid text. */
export const ROW_OUTPUT_BYTES = 64 * 1024;

/** Tries to end a test in ERROR when its result could not be recorded. */
const RECORD_TRIES = 3;

export type AbortReason = 'cancel' | 'shutdown' | 'fenced';

/**
 * How a job ended for its queue: `done` (the test moved on: finished, cancelled, taken by another
 * worker), or `handed-back` (this worker is shutting down and the test is QUEUED again): its job must go
 * back to the queue, not be completed, so it keeps its priority and its place ahead of later submissions.
 */
export type JobEnd = 'done' | 'handed-back';

export interface ExecutorDeps {
  config: Config;
  logger: Logger;
  tests: TestsRepository;
  plans: PlansRepository;
  runs: RunsRepository;
  events: EventBus;
  store: ArtifactStore;
  managers: Map<string, ResourceManager>;
  workerId: string;
  hostCpus: number;
  /** Aborted when the worker stops for good: waiting for an environment ends. */
  stopping: AbortSignal;
  now(): Date;
}

interface Running {
  controller: AbortController;
  attempt: number;
  reason: AbortReason | null;
}

export class TestExecutor {
  /** Tests running in this process, by id. */
  readonly running = new Map<string, Running>();

  /** Plan refreshes after tests start, coalesced; call flush() when stopping. */
  readonly refresher: PlanRefresher;

  constructor(private readonly d: ExecutorDeps) {
    this.refresher = new PlanRefresher(d, (err, planId) => d.logger.warn({ err, planId }, 'refreshing a plan failed'));
  }

  abort(testId: string, reason: AbortReason): boolean {
    const r = this.running.get(testId);
    if (!r || r.reason) return false;
    r.reason = reason;
    r.controller.abort(new Error(reason));
    return true;
  }

  async execute(job: RunTestPayload): Promise<JobEnd> {
    const d = this.d;
    const spec = await d.tests.spec(job.testId);
    if (!spec || isTerminal(spec.status)) return 'done'; // cancelled or finished: nothing to do
    const manager = d.managers.get(spec.pool);
    if (!manager) throw new Error(`this worker does not serve pool "${spec.pool}"`);
    let attempts = spec.attempts;
    let from: TestStatus = spec.status;
    const log = d.logger.child({ planId: spec.planId, testId: spec.id });

    if (spec.status === 'RUNNING') {
      // the worker of attempt `attempts` was lost (its job stalled and came back): an infrastructure fault
      log.warn({ attempt: attempts }, 'taking over a test whose worker was lost');
      await d.runs.finishLost(spec.id, attempts, `environment fault: the worker running attempt ${attempts} was lost`);
      if (afterInfrastructureFault(attempts, spec.maxRetries) === 'ERROR') {
        await this.endInError(spec, attempts, log);
        return 'done';
      }
    }

    for (;;) {
      const running: Running = { controller: new AbortController(), attempt: attempts + 1, reason: null };
      this.running.set(spec.id, running);
      let lease: Lease;
      try {
        lease = await manager.acquire(spec.id, d.stopping);
      } catch (err) {
        this.running.delete(spec.id);
        // Stopping while it waited for an environment: it never started here; back to its place in the queue.
        if (d.stopping.aborted) {
          log.info('handed back before it started: the worker is shutting down');
          return 'handed-back';
        }
        throw err;
      }
      const envId = lease.handle.id;
      const begun = await d.runs.startAttempt(spec.id, { from, attempt: attempts }, envId, d.workerId);
      if (!begun) {
        this.running.delete(spec.id);
        void manager.release(lease);
        return 'done'; // cancelled, or another worker took it
      }
      attempts += 1;
      const runLog = log.child({ attempt: attempts, environmentId: envId });
      const { test: started, runId } = begun;
      d.events.emit('test', started);
      this.refresher.soon(spec.planId);

      let outcome: RunOutcome;
      const artifactDir = join(d.config.dataDir, 'runs', `${spec.id}-${attempts}`);
      try {
        mkdirSync(artifactDir, { recursive: true });
        const output = new OutputPublisher(d.events, spec.id);
        try {
          outcome = await manager.run(lease, {
            testId: spec.id,
            attempt: attempts,
            script: spec.script,
            env: Object.fromEntries((spec.env as { name: string; value: string }[]).map((e) => [e.name, e.value])),
            timeoutMs: spec.timeoutSeconds * 1000,
            services: spec.services as ServiceSpec[],
            artifactPaths: spec.artifactPaths,
            artifactDir,
            artifactLimits: d.config.artifactLimits,
            maxOutputBytes: d.config.maxOutputBytes,
            dedicatedCpus: spec.type === 'PERFORMANCE' ? dedicatedCpuSet(lease.slot, manager.pool.cpus, d.hostCpus) : undefined,
            isolation: spec.type === 'SECURITY' ? 'hardened' : 'standard',
            onOutput: (stream, chunk) => output.push(stream, chunk),
            signal: running.controller.signal,
          });
        } finally {
          output.flushAll();
        }
      } catch (err) {
        this.running.delete(spec.id);
        await removeRunDir(artifactDir, runLog);
        const message = `environment fault: ${(err as Error).message}`.split('\n')[0];
        runLog.error({ err, infrastructure: err instanceof InfrastructureError }, 'environment fault while running a test');
        await d.runs.finish(runId, failedRun('ERROR', message, true), []);
        void manager.fail(lease, message);
        if (afterInfrastructureFault(attempts, spec.maxRetries) === 'ERROR') {
          await this.endInError(spec, attempts, runLog);
          return 'done';
        }
        const back = await d.tests.transition(spec.id, { from: ['RUNNING'], attempt: attempts }, { status: 'QUEUED', environmentId: null });
        if (!back) return 'done';
        await publishTestChanges(d, spec.planId, [back]);
        from = 'QUEUED';
        continue; // at the front of the queue still: this job takes the next environment of the pool
      }
      this.running.delete(spec.id);

      try {
        return await this.record(spec, attempts, runId, outcome, running.reason, manager, runLog);
      } finally {
        void manager.release(lease);
        await removeRunDir(artifactDir, runLog);
      }
    }
  }

  private async record(
    spec: TestSpecRow,
    attempt: number,
    runId: string,
    outcome: RunOutcome,
    reason: AbortReason | null,
    manager: ResourceManager,
    log: Logger,
  ): Promise<JobEnd> {
    const d = this.d;
    if (outcome.aborted && reason === 'shutdown') {
      await d.runs.finish(runId, { ...resultOf(outcome, 'QUEUED', 'the worker shut down during the run', true) }, []);
      const back = await d.tests.transition(spec.id, { from: ['RUNNING'], attempt }, { status: 'QUEUED', environmentId: null });
      if (!back) return 'done'; // cancelled or taken over meanwhile: its job is done here
      await publishTestChanges(d, spec.planId, [back]);
      log.info('handed back: the worker is shutting down');
      return 'handed-back';
    }
    if (outcome.aborted) {
      await d.runs.finish(runId, resultOf(outcome, 'CANCELLED', reason === 'fenced' ? 'superseded by a newer attempt' : 'cancelled while running', false), []);
      log.info({ reason }, 'run stopped');
      return 'done';
    }
    try {
      await this.recordResult(spec, attempt, runId, outcome, manager, log);
    } catch (err) {
      await this.recordFailed(spec, attempt, runId, err as Error, log);
    }
    return 'done';
  }

  /** The finished run's result: output (as safe text, the exact bytes as LOG artifacts), artifacts, status. */
  private async recordResult(spec: TestSpecRow, attempt: number, runId: string, outcome: RunOutcome, manager: ResourceManager, log: Logger): Promise<void> {
    const d = this.d;
    const output = {
      stdout: rowOutput(outcome.stdoutBytes ?? Buffer.from(outcome.stdout), ROW_OUTPUT_BYTES, 'stdout.log'),
      stderr: rowOutput(outcome.stderrBytes ?? Buffer.from(outcome.stderr), ROW_OUTPUT_BYTES, 'stderr.log'),
    };
    const { status, errorMessage } = classifyRun({
      exitCode: outcome.exitCode,
      signal: outcome.signal,
      timedOut: outcome.timedOut,
      oomKilled: outcome.oomKilled,
      stderr: output.stderr.text,
      timeoutSeconds: spec.timeoutSeconds,
      memoryMb: manager.pool.memoryMb,
      diskFull: outcome.diskFull,
      diskMb: manager.pool.diskMb,
      pidsLimitHit: outcome.pidsLimitHit,
      pidsLimit: manager.pool.pids,
    });
    const artifacts: StoredArtifact[] = [];
    for (const f of outcome.files) {
      const { key, sha256 } = await d.store.putFile(f.path);
      artifacts.push({ name: f.name, kind: f.kind, sizeBytes: f.sizeBytes, sha256, storageKey: key });
    }
    const result = resultOf(outcome, status, withArtifactNotes(errorMessage, outcome.artifactNotes), false);
    for (const stream of ['stdout', 'stderr'] as const) {
      const row = output[stream];
      result[stream] = row.text;
      if (row.exact) continue;
      // not byte-exact in the row (abridged, or not valid text): the exact bytes are an artifact
      const put = d.store.putBytes(outcome[`${stream}Bytes`] ?? Buffer.from(outcome[stream]));
      artifacts.push({ name: `${stream}.log`, kind: 'LOG', sizeBytes: put.size, sha256: put.sha256, storageKey: put.key });
      if (row.abridged) result.outputTruncated = true;
    }
    const stored = await d.runs.addArtifacts(runId, artifacts);
    const done = await d.runs.finishAttempt(spec.id, attempt, runId, result);
    if (!done) {
      log.warn({ status }, 'result of a stale attempt kept on its run only: the test moved on');
      return;
    }
    // The live event carries the first page of artifacts and their count, never 20,000 of them.
    d.events.emit('test', { ...done, result: resultView({ ...result, id: runId, artifacts: stored }) });
    this.refresher.soon(spec.planId);
    log.info({ status, exitCode: outcome.exitCode, signal: outcome.signal, durationMs: Math.round(outcome.durationMs) }, 'test finished');
  }

  /**
   * The result could not be recorded (a database error, a full disk…): the test ends in ERROR naming the
   * cause, fenced by its attempt, and is not run again (its job is done: this is not a lost job). A few
   * tries for a database that comes back; if even the ERROR cannot be written, the job fails.
   */
  private async recordFailed(spec: TestSpecRow, attempt: number, runId: string, err: Error, log: Logger): Promise<void> {
    const d = this.d;
    const message = `the result could not be recorded: ${lastLine(err?.message ?? String(err)) ?? err?.name ?? 'unknown error'}`;
    log.error({ err }, 'recording the result failed: the test ends in ERROR');
    for (let tries = 1; ; tries++) {
      try {
        await d.runs.finish(runId, failedRun('ERROR', message, true), []);
        const t = await d.tests.transition(spec.id, { from: ['RUNNING'], attempt }, { status: 'ERROR', finishedAt: d.now() });
        if (t) await publishTestChanges(d, spec.planId, [t]);
        return;
      } catch (again) {
        if (tries >= RECORD_TRIES) {
          log.error({ err: again, cause: message }, 'cannot record the ERROR either: the job fails');
          throw again;
        }
        log.warn({ err: again, tries }, 'recording the ERROR failed: trying again');
        await new Promise((resolve) => setTimeout(resolve, 1_000 * tries));
      }
    }
  }

  /** ERROR for a test whose retry budget for environment faults is spent. */
  private async endInError(spec: TestSpecRow, attempt: number, log: Logger): Promise<void> {
    const t = await this.d.tests.transition(spec.id, { from: ['RUNNING', 'QUEUED'], attempt }, { status: 'ERROR', finishedAt: this.d.now() });
    if (t) await publishTestChanges(this.d, spec.planId, [t]);
    log.error({ attempt, maxRetries: spec.maxRetries }, 'test ends in ERROR: its retry budget for environment faults is spent');
  }
}

/**
 * Removes a run's collected files once stored. Async: a run with 20,000 artifacts took rmSync ~2 s
 * of the event loop (the API's, in `start`).
 */
async function removeRunDir(dir: string, log: Logger): Promise<void> {
  await fsp.rm(dir, { recursive: true, force: true }).catch((err: Error) => log.error({ dir, err: err.message }, 'cannot remove the run dir: its files stay on the host'));
}

function resultOf(o: RunOutcome, status: TestStatus, errorMessage: string | null, infrastructure: boolean): RunResult {
  return {
    status,
    exitCode: o.exitCode,
    signal: o.signal,
    stdout: o.stdout,
    stderr: o.stderr,
    outputTruncated: o.outputTruncated,
    timedOut: o.timedOut,
    durationMs: o.durationMs,
    errorMessage,
    infrastructure,
    cpuTimeMs: o.cpuTimeMs,
    peakMemoryBytes: o.peakMemoryBytes,
  };
}

function failedRun(status: TestStatus, errorMessage: string, infrastructure: boolean): RunResult {
  return { status, exitCode: null, signal: null, stdout: '', stderr: '', outputTruncated: false, timedOut: false, durationMs: 0, errorMessage, infrastructure, cpuTimeMs: null, peakMemoryBytes: null };
}
