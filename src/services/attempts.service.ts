// The attempt lifecycle has one owner. An attempt begins (the test moves to RUNNING) and ends one way:
// finished with its result, stopped (cancelled or superseded), handed back (QUEUED again, for its job to
// go back to its place in the queue), failed by its environment (retried or ERROR), lost with its worker
// or its job, or unrecordable (ERROR naming the cause). Each is one fenced statement of
// db/runs.repository.ts: the test changes only while it is still at that attempt. Each publishes what
// changed. The worker's executor and the reconciler both use it; neither writes an attempt itself.

import type { Logger } from 'pino';
import { afterInfrastructureFault, classifyRun, lastLine, withArtifactNotes } from '../domain/outcome';
import { rowOutput } from '../domain/output-text';
import type { TestStatus } from '../domain/status';
import type { RunResult, StoredArtifact } from '../db/runs.repository';
import type { TestSpecRow } from '../db/tests.repository';
import { resultView } from '../views/view.mappers';
import type { CollectedFile, RunOutcome } from '../environments/driver';
import { bestEffort } from '../infra/best-effort';
import type { ArtifactStore, PutResult } from '../infra/artifact-store';
import type { ServiceDeps } from './context';
import { PlanRefresher, publishTestChanges } from './transitions';

/** What a worker needs to run a test (its row). */
export type AttemptSpec = TestSpecRow;

/** Output kept in the result row; the exact capture goes to the artifact store when longer or not valid text. */
export const ROW_OUTPUT_BYTES = 64 * 1024;

/** Tries to end a test in ERROR when its result could not be recorded. */
const RECORD_TRIES = 3;

export type AttemptsDeps = Pick<ServiceDeps, 'logger' | 'tests' | 'plans' | 'runs' | 'events' | 'queues' | 'now'> & {
  /** Where a finished run's files and exact output go (the worker's; the reconciler never finishes a run). */
  store?: ArtifactStore;
  /** Pause between tries to record an ERROR (default 1 s × try). */
  retryDelayMs?: number;
};

/** An attempt under way: the test is RUNNING at `number`, and `runId` is its run row. */
export interface Attempt {
  spec: AttemptSpec;
  number: number;
  runId: string;
  log: Logger;
}

/** The limits of the pool the run had, which name the cause of a run they ended. */
export interface PoolLimits {
  memoryMb: number;
  diskMb?: number;
  pids: number;
}

/** How an attempt that its environment failed goes on: another attempt, or none (ERROR, or the test moved on). */
export type AfterFault = 'retry' | 'done';

export class AttemptsService {
  /** Plan refreshes after tests start and finish, coalesced; call flush() when stopping. */
  readonly refresher: PlanRefresher;

  constructor(private readonly d: AttemptsDeps) {
    this.refresher = new PlanRefresher(d, (err, planId) => d.logger.warn({ err, planId }, 'refreshing a plan failed'));
  }

  /** The test as a worker needs it; null when it is gone. */
  spec(testId: string): Promise<AttemptSpec | null> {
    return this.d.tests.spec(testId);
  }

  /** What every test of a plan starts with: the bundle's id and the plan's files; null when the plan is gone. */
  planInputs(planId: string): Promise<{ bundleId: string | null; files: unknown } | null> {
    return this.d.plans.inputs(planId);
  }

  /** Status and attempts of tests running here, for the worker's watchdog (the database decides). */
  states(testIds: string[]): Promise<Map<string, { status: TestStatus; attempts: number }>> {
    return this.d.tests.states(testIds);
  }

  /**
   * Moves the test to RUNNING at attempt `guard.attempt + 1` on this environment, only while it is still
   * `guard.from` at `guard.attempt`. null: cancelled meanwhile, or another worker took it.
   */
  async begin(
    spec: AttemptSpec,
    guard: { from: TestStatus; attempt: number },
    environmentId: string,
    workerId: string,
    log: Logger,
    imageDigest: string | null = null,
  ): Promise<Attempt | null> {
    const begun = await this.d.runs.startAttempt(spec.id, guard, environmentId, workerId, imageDigest);
    if (!begun) return null;
    this.d.events.emit('test', begun.test);
    this.refresher.soon(spec.planId);
    const number = guard.attempt + 1;
    return { spec, number, runId: begun.runId, log: log.child({ attempt: number, environmentId }) };
  }

  /**
   * Records a run that ended on its own: its output (as safe text, the exact bytes as LOG artifacts),
   * its files and its status. When that cannot be recorded, the test ends in ERROR naming the cause.
   */
  async finish(a: Attempt, outcome: RunOutcome, limits: PoolLimits): Promise<void> {
    try {
      await this.record(a, outcome, limits);
    } catch (err) {
      await this.recordFailed(a, err as Error);
    }
  }

  /** A run stopped because its test moved on (cancelled, or a newer attempt elsewhere): its run row only. */
  async stopped(a: Attempt, outcome: RunOutcome, reason: 'cancel' | 'fenced'): Promise<void> {
    await this.d.runs.finish(a.runId, resultOf(outcome, 'CANCELLED', reason === 'fenced' ? 'superseded by a newer attempt' : 'cancelled while running', false), []);
    a.log.info({ reason }, 'run stopped');
  }

  /**
   * The worker is shutting down during the run: the test is QUEUED again (its job must go back to its
   * place in the queue). false: it moved on meanwhile (cancelled, taken over) and its job is done.
   */
  async handBack(a: Attempt, outcome: RunOutcome): Promise<boolean> {
    const back = await this.d.runs.finishAttempt(a.spec.id, a.number, a.runId, resultOf(outcome, 'QUEUED', 'the worker shut down during the run', true));
    if (!back) return false;
    await publishTestChanges(this.d, a.spec.planId, [back]);
    a.log.info('handed back: the worker is shutting down');
    return true;
  }

  /** The environment failed during the run: not a test failure. Another attempt, or ERROR once the budget is spent. */
  async fault(a: Attempt, message: string, files: CollectedFile[] = []): Promise<AfterFault> {
    const retry = afterInfrastructureFault(a.number, a.spec.maxRetries) === 'RETRY';
    const store = this.d.store;
    if (store && files.length) {
      await bestEffort(a.log, 'storing the files of a failed attempt', async () => {
        const artifacts: StoredArtifact[] = [];
        for (const f of files) {
          const p = await store.putFile(f.path);
          artifacts.push({ name: f.name, kind: f.kind, sizeBytes: p.size, sha256: p.sha256, storageKey: p.key });
        }
        await this.d.runs.addArtifacts(a.runId, artifacts);
      });
    }
    const t = await this.d.runs.finishAttempt(a.spec.id, a.number, a.runId, failedRun('ERROR', message), retry ? 'QUEUED' : 'ERROR');
    if (!t) return 'done';
    await publishTestChanges(this.d, a.spec.planId, [t]);
    if (!retry) this.budgetSpent(a.spec, a.number, a.log);
    return retry ? 'retry' : 'done';
  }

  /**
   * A worker finds the test RUNNING: the worker of its last attempt was lost (its job stalled and came
   * back). 'retry': the test stays RUNNING for this worker to take over; 'done': ERROR (its budget is
   * spent) or it moved on.
   */
  async takeOver(spec: AttemptSpec, log: Logger): Promise<AfterFault> {
    const n = spec.attempts;
    log.warn({ attempt: n }, 'taking over a test whose worker was lost');
    const retry = afterInfrastructureFault(n, spec.maxRetries) === 'RETRY';
    const t = await this.d.runs.loseAttempt(spec.id, n, `environment fault: the worker running attempt ${n} was lost`, retry ? 'RUNNING' : 'ERROR');
    if (!t) return 'done';
    if (retry) return 'retry';
    await publishTestChanges(this.d, spec.planId, [t]);
    this.budgetSpent(spec, n, log);
    return 'done';
  }

  /**
   * A RUNNING test whose job vanished from its queue (Redis lost its data, or its worker's job failed
   * before anything was recorded): QUEUED again with a new job, or ERROR once its budget is spent.
   * null: it moved on meanwhile.
   */
  async lose(t: { id: string; planId: string; pool: string; priority: number; attempts: number; maxRetries: number }): Promise<{ retry: boolean } | null> {
    const retry = afterInfrastructureFault(t.attempts, t.maxRetries) === 'RETRY';
    const message = `environment fault: the job of attempt ${t.attempts} vanished from its queue with no result recorded (Redis lost its data, or its worker failed: see that worker's log)`;
    const changed = await this.d.runs.loseAttempt(t.id, t.attempts, message, retry ? 'QUEUED' : 'ERROR');
    if (!changed) return null;
    if (retry) await this.d.queues.enqueue([{ testId: t.id, planId: t.planId, pool: t.pool, priority: t.priority }]);
    await publishTestChanges(this.d, t.planId, [changed]);
    return { retry };
  }

  /**
   * A test whose image cannot be had (its build failed) ends in ERROR with `message` as its result's
   * errorMessage, fenced by its attempt count: QUEUED, or RUNNING after a take-over (its lost attempt
   * already recorded). false: it moved on meanwhile.
   */
  async refuse(spec: AttemptSpec, message: string): Promise<boolean> {
    const changed = await this.d.runs.refuse(spec.id, { from: spec.status === 'RUNNING' ? 'RUNNING' : 'QUEUED', attempt: spec.attempts }, message);
    if (changed) await publishTestChanges(this.d, spec.planId, [changed]);
    return changed !== null;
  }

  /** A QUEUED test that can never run (its pool is no longer configured) ends in ERROR. */
  async unservable(t: { id: string; planId: string }): Promise<void> {
    const changed = await this.d.tests.transition(t.id, { from: ['QUEUED'] }, { status: 'ERROR', finishedAt: this.d.now() });
    if (changed) await publishTestChanges(this.d, t.planId, [changed]);
  }

  /** Runs every pending plan refresh now. */
  flush(): Promise<void> {
    return this.refresher.flush();
  }

  private async record(a: Attempt, outcome: RunOutcome, limits: PoolLimits): Promise<void> {
    const store = this.d.store;
    if (!store) throw new Error('this process has no artifact store: it cannot record a run');
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
      timeoutSeconds: a.spec.timeoutSeconds,
      memoryMb: limits.memoryMb,
      diskFull: outcome.diskFull,
      diskMb: limits.diskMb,
      pidsLimitHit: outcome.pidsLimitHit,
      pidsLimit: limits.pids,
    });
    // The driver's files: the complete logs (stdout.log, stderr.log, service-<name>.log), the test's
    // files, core dumps. Each is put in the store, then its row written.
    const artifacts: StoredArtifact[] = [];
    const sources: (() => Promise<PutResult>)[] = [];
    const put = async (source: () => Promise<PutResult>, name: string, kind: StoredArtifact['kind']) => {
      const p = await source();
      artifacts.push({ name, kind, sizeBytes: p.size, sha256: p.sha256, storageKey: p.key });
      sources.push(source);
    };
    for (const f of outcome.files) await put(() => store.putFile(f.path), f.name, f.kind);
    const result = resultOf(outcome, status, withArtifactNotes(errorMessage, outcome.artifactNotes), false);
    for (const stream of ['stdout', 'stderr'] as const) {
      const row = output[stream];
      result[stream] = row.text;
      if (row.abridged) result.outputTruncated = true;
      // a driver that wrote no complete log: the bytes it captured are the log
      const name = `${stream}.log`;
      if (!outcome.files.some((f) => f.kind === 'LOG' && f.name === name)) {
        const bytes = outcome[`${stream}Bytes`] ?? Buffer.from(outcome[stream]);
        await put(() => store.putBytes(bytes), name, 'LOG');
      }
    }
    const stored = await this.d.runs.addArtifacts(a.runId, artifacts);
    // A blob that was stored already may have been removed since (the last plan referencing it was
    // deleted) before these rows were written: stored again (see BLOB_LOCK in db/artifacts.repository.ts).
    for (const [i, art] of artifacts.entries()) {
      if (await store.has(art.storageKey)) continue;
      a.log.warn({ artifact: art.name }, 'an artifact blob was removed while its rows were written: stored again');
      await sources[i]();
    }
    const done = await this.d.runs.finishAttempt(a.spec.id, a.number, a.runId, result);
    if (!done) {
      a.log.warn({ status }, 'result of a stale attempt kept on its run only: the test moved on');
      return;
    }
    // The live event carries the first page of artifacts and their count, never 20,000 of them.
    this.d.events.emit('test', { ...done, result: resultView({ ...result, id: a.runId, artifacts: stored }) });
    this.refresher.soon(a.spec.planId);
    a.log.info({ status, exitCode: outcome.exitCode, signal: outcome.signal, durationMs: Math.round(outcome.durationMs) }, 'test finished');
  }

  /**
   * The result could not be recorded (a database error, a full disk…): the test ends in ERROR naming the
   * cause, fenced by its attempt, and is not run again (its job is done: this is not a lost job). A few
   * tries for a database that comes back; if even the ERROR cannot be written, this throws (the job fails).
   */
  private async recordFailed(a: Attempt, err: Error): Promise<void> {
    const message = `the result could not be recorded: ${lastLine(err?.message ?? String(err)) ?? err?.name ?? 'unknown error'}`;
    a.log.error({ err }, 'recording the result failed: the test ends in ERROR');
    for (let tries = 1; ; tries++) {
      try {
        const t = await this.d.runs.finishAttempt(a.spec.id, a.number, a.runId, failedRun('ERROR', message));
        if (t) await publishTestChanges(this.d, a.spec.planId, [t]);
        return;
      } catch (again) {
        if (tries >= RECORD_TRIES) {
          a.log.error({ err: again, cause: message }, 'cannot record the ERROR either: the job fails');
          throw again;
        }
        a.log.warn({ err: again, tries }, 'recording the ERROR failed: trying again');
        await new Promise((resolve) => setTimeout(resolve, (this.d.retryDelayMs ?? 1_000) * tries));
      }
    }
  }

  private budgetSpent(spec: AttemptSpec, attempt: number, log: Logger): void {
    log.error({ attempt, maxRetries: spec.maxRetries }, 'test ends in ERROR: its retry budget for environment faults is spent');
  }
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
    userCpuMs: o.userCpuMs ?? null,
    systemCpuMs: o.systemCpuMs ?? null,
    voluntaryContextSwitches: o.voluntaryContextSwitches ?? null,
    involuntaryContextSwitches: o.involuntaryContextSwitches ?? null,
    readBytes: o.readBytes ?? null,
    writeBytes: o.writeBytes ?? null,
    reportedMetrics: o.reportedMetrics ?? [],
  };
}

/** An infrastructure ERROR with nothing of a run to keep. */
function failedRun(status: TestStatus, errorMessage: string): RunResult {
  return {
    status, exitCode: null, signal: null, stdout: '', stderr: '', outputTruncated: false, timedOut: false, durationMs: 0, errorMessage, infrastructure: true,
    cpuTimeMs: null, peakMemoryBytes: null, ...NO_DETAILED_METRICS, reportedMetrics: [],
  };
}

const NO_DETAILED_METRICS = {
  userCpuMs: null, systemCpuMs: null, voluntaryContextSwitches: null, involuntaryContextSwitches: null, readBytes: null, writeBytes: null,
} as const;
