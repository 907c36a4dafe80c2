// Runs one test job: takes an environment, begins the attempt, runs the script through the pool's
// driver, hands the outcome to the attempts service (which records it, fenced by the attempt) and hands
// the environment back. An environment fault is never a test failure: the environment is replaced and
// the test retried until its budget is spent, then ERROR.

import { mkdirSync, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/config';
import { isTerminal, type TestStatus } from '../domain/status';
import { InfrastructureError, type RunOutcome, type ServiceSpec } from '../environments/driver';
import type { Lease, ResourceManager } from '../environments/resource-manager';
import type { EventBus } from '../events/bus';
import type { RunTestPayload } from '../queue/catalog';
import type { Attempt, AttemptSpec, AttemptsService } from '../services/attempts.service';
import { OutputPublisher } from './output-publisher';

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
  attempts: AttemptsService;
  /** Live output of running tests. */
  events: EventBus;
  managers: Map<string, ResourceManager>;
  workerId: string;
  /** Aborted when the worker stops for good: waiting for an environment ends. */
  stopping: AbortSignal;
}

interface Running {
  controller: AbortController;
  attempt: number;
  reason: AbortReason | null;
}

export class TestExecutor {
  /** Tests running in this process, by id. */
  readonly running = new Map<string, Running>();

  constructor(private readonly d: ExecutorDeps) {}

  abort(testId: string, reason: AbortReason): boolean {
    const r = this.running.get(testId);
    if (!r || r.reason) return false;
    r.reason = reason;
    r.controller.abort(new Error(reason));
    return true;
  }

  async execute(job: RunTestPayload): Promise<JobEnd> {
    const d = this.d;
    const spec = await d.attempts.spec(job.testId);
    if (!spec || isTerminal(spec.status)) return 'done'; // cancelled or finished: nothing to do
    const manager = d.managers.get(spec.pool);
    if (!manager) throw new Error(`this worker does not serve pool "${spec.pool}"`);
    let attempts = spec.attempts;
    let from: TestStatus = spec.status;
    const log = d.logger.child({ planId: spec.planId, testId: spec.id });
    // the worker of attempt `attempts` was lost (its job stalled and came back): an infrastructure fault
    if (spec.status === 'RUNNING' && (await d.attempts.takeOver(spec, log)) === 'done') return 'done';

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
      const attempt = await d.attempts.begin(spec, { from, attempt: attempts }, lease.handle.id, d.workerId, log);
      if (!attempt) {
        this.running.delete(spec.id);
        void manager.release(lease);
        return 'done'; // cancelled, or another worker took it
      }
      attempts = attempt.number;
      const artifactDir = join(d.config.dataDir, 'runs', `${spec.id}-${attempts}`);
      let outcome: RunOutcome;
      try {
        outcome = await this.run(spec, attempt, lease, manager, artifactDir, running.controller.signal);
      } catch (err) {
        this.running.delete(spec.id);
        await removeRunDir(artifactDir, attempt.log);
        const message = `environment fault: ${(err as Error).message}`.split('\n')[0];
        attempt.log.error({ err, infrastructure: err instanceof InfrastructureError }, 'environment fault while running a test');
        void manager.fail(lease, message);
        if ((await d.attempts.fault(attempt, message)) === 'done') return 'done';
        from = 'QUEUED';
        continue; // at the front of the queue still: this job takes the next environment of the pool
      }
      this.running.delete(spec.id);
      try {
        return await this.record(attempt, outcome, running.reason, manager);
      } finally {
        void manager.release(lease);
        await removeRunDir(artifactDir, attempt.log);
      }
    }
  }

  private async run(spec: AttemptSpec, attempt: Attempt, lease: Lease, manager: ResourceManager, artifactDir: string, signal: AbortSignal): Promise<RunOutcome> {
    const d = this.d;
    mkdirSync(artifactDir, { recursive: true });
    const output = new OutputPublisher(d.events, spec.id);
    try {
      return await manager.run(lease, {
        testId: spec.id,
        attempt: attempt.number,
        script: spec.script,
        env: Object.fromEntries((spec.env as { name: string; value: string }[]).map((e) => [e.name, e.value])),
        timeoutMs: spec.timeoutSeconds * 1000,
        services: spec.services as ServiceSpec[],
        artifactPaths: spec.artifactPaths,
        artifactDir,
        artifactLimits: d.config.artifactLimits,
        maxOutputBytes: d.config.maxOutputBytes,
        // reserved host-wide by the driver: no other test on this host runs on them meanwhile
        dedicatedCpus: spec.type === 'PERFORMANCE' ? manager.pool.cpus : undefined,
        isolation: spec.type === 'SECURITY' ? 'hardened' : 'standard',
        onOutput: (stream, chunk) => output.push(stream, chunk),
        signal,
      });
    } finally {
      output.flushAll();
    }
  }

  /** Hands the outcome to the attempts service: handed back at shutdown, stopped, or recorded. */
  private async record(attempt: Attempt, outcome: RunOutcome, reason: AbortReason | null, manager: ResourceManager): Promise<JobEnd> {
    const attempts = this.d.attempts;
    if (outcome.aborted && reason === 'shutdown') return (await attempts.handBack(attempt, outcome)) ? 'handed-back' : 'done';
    if (outcome.aborted) {
      await attempts.stopped(attempt, outcome, reason === 'fenced' ? 'fenced' : 'cancel');
      return 'done';
    }
    await attempts.finish(attempt, outcome, manager.pool);
    return 'done';
  }
}

/**
 * Removes a run's collected files once stored. Async: a run with 20,000 artifacts took rmSync ~2 s
 * of the event loop (the API's, in `start`).
 */
async function removeRunDir(dir: string, log: Logger): Promise<void> {
  await fsp.rm(dir, { recursive: true, force: true }).catch((err: Error) => log.error({ dir, err: err.message }, 'cannot remove the run dir: its files stay on the host'));
}
