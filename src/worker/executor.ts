// Runs one test job: takes an environment, begins the attempt, runs the script through the pool's
// driver, hands the outcome to the attempts service (which records it, fenced by the attempt) and hands
// the environment back. An environment fault is never a test failure: the environment is replaced and
// the test retried until its budget is spent, then ERROR.

import { mkdirSync, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/config';
import { imageOf, type Requirements } from '../domain/matching';
import { isTerminal, type TestStatus } from '../domain/status';
import { InfrastructureError, type RunInputs, type RunOutcome, type ServiceSpec } from '../environments/driver';
import { mergeFileLayers, type WorkFile } from '../domain/work-files';
import type { Lease, ResourceManager } from '../environments/resource-manager';
import type { EventBus } from '../events/bus';
import type { RunTestPayload } from '../queue/catalog';
import type { Attempt, AttemptSpec, AttemptsService } from '../services/attempts.service';
import type { ImageForRun, ImageSupply } from './image-supply';
import { OutputPublisher } from './output-publisher';

export type AbortReason = 'cancel' | 'shutdown' | 'fenced';

/**
 * How a job ended for its queue: `done` (the test moved on: finished, cancelled, taken by another
 * worker), or `handed-back` (this worker is shutting down and the test is QUEUED again): its job must go
 * back to the queue, not be completed, so it keeps its priority and its place ahead of later submissions.
 * `wait-for-image`: the test's image is being built on this host; the test stays QUEUED and its job is
 * tried again shortly (delayed), without holding an environment.
 */
export type JobEnd = 'done' | 'handed-back' | 'wait-for-image';

export interface ExecutorDeps {
  config: Config;
  logger: Logger;
  attempts: AttemptsService;
  /** Live output of running tests. */
  events: EventBus;
  managers: Map<string, ResourceManager>;
  /** The image version of each run (built on this host). */
  images: ImageSupply;
  workerId: string;
  /** Aborted when the worker stops for good: waiting for an environment ends. */
  stopping: AbortSignal;
  /** The host directory of an uploaded bundle's files (BundleStore.treeOf). */
  bundleTree(id: string): string;
}

/** Plans whose inputs are kept (a plan's bundle and files never change). */
const PLAN_INPUTS_KEPT = 32;

interface Running {
  controller: AbortController;
  attempt: number;
  reason: AbortReason | null;
}

export class TestExecutor {
  /** Tests running in this process, by id. */
  readonly running = new Map<string, Running>();
  /** The bundle and files of recent plans, by plan id (oldest first). */
  private readonly planInputs = new Map<string, Promise<{ bundleId: string | null; files: WorkFile[] }>>();

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
    const attempts = spec.attempts;
    const from: TestStatus = spec.status;
    const log = d.logger.child({ planId: spec.planId, testId: spec.id });
    // The image first: a test that must wait for it changes nothing meanwhile.
    const imageName = imageOf(manager.pool, (spec.requirements ?? {}) as Requirements);
    const image = await d.images.forRun(imageName, spec.id);
    if (image.state === 'waiting') {
      log.debug({ image: imageName, why: image.why }, 'the test waits for its image');
      return 'wait-for-image';
    }
    try {
      // the worker of attempt `attempts` was lost (its job stalled and came back): an infrastructure fault
      if (spec.status === 'RUNNING' && (await d.attempts.takeOver(spec, log)) === 'done') return 'done';
      if (image.state === 'failed') {
        const message = `image "${imageName}" failed to build: ${image.message}`;
        log.warn({ image: imageName }, `the test cannot run: ${message}`);
        await d.attempts.refuse(spec, message);
        return 'done';
      }
      return await this.attemptAll(spec, { from, attempts }, manager, image, log);
    } finally {
      if (image.state === 'ready') image.release();
    }
  }

  /** Attempts until one ends the test (or it is handed back): a fault retries on another environment. */
  private async attemptAll(
    spec: AttemptSpec,
    start: { from: TestStatus; attempts: number },
    manager: ResourceManager,
    image: Extract<ImageForRun, { state: 'ready' }>,
    log: Logger,
  ): Promise<JobEnd> {
    const d = this.d;
    let { from, attempts } = start;
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
      const attempt = await d.attempts.begin(spec, { from, attempt: attempts }, lease.handle.id, d.workerId, log, image.image.digest);
      if (!attempt) {
        this.running.delete(spec.id);
        void manager.release(lease);
        return 'done'; // cancelled, or another worker took it
      }
      attempts = attempt.number;
      const artifactDir = join(d.config.dataDir, 'runs', `${spec.id}-${attempts}`);
      let outcome: RunOutcome;
      try {
        outcome = await this.run(spec, attempt, lease, manager, image, artifactDir, running.controller.signal);
      } catch (err) {
        this.running.delete(spec.id);
        const message = `environment fault: ${(err as Error).message}`.split('\n')[0];
        attempt.log.error({ err, infrastructure: err instanceof InfrastructureError }, 'environment fault while running a test');
        void manager.fail(lease, message);
        // what the driver kept of the failed attempt (a VM's console log) is stored with it
        const after = await d.attempts.fault(attempt, message, err instanceof InfrastructureError ? err.files : []);
        await removeRunDir(artifactDir, attempt.log);
        if (after === 'done') return 'done';
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

  private async run(
    spec: AttemptSpec,
    attempt: Attempt,
    lease: Lease,
    manager: ResourceManager,
    image: Extract<ImageForRun, { state: 'ready' }>,
    artifactDir: string,
    signal: AbortSignal,
  ): Promise<RunOutcome> {
    const d = this.d;
    mkdirSync(artifactDir, { recursive: true });
    const inputs = await this.inputsOf(spec);
    const output = new OutputPublisher(d.events, spec.id);
    try {
      return await manager.run(lease, {
        testId: spec.id,
        attempt: attempt.number,
        script: spec.script,
        inputs,
        image: image.image,
        // the image's variables, then the test's own (which win)
        env: { ...image.env, ...Object.fromEntries((spec.env as { name: string; value: string }[]).map((e) => [e.name, e.value])) },
        timeoutMs: spec.timeoutSeconds * 1000,
        services: spec.services as ServiceSpec[],
        artifactPaths: spec.artifactPaths,
        artifactDir,
        artifactLimits: d.config.artifactLimits,
        maxOutputBytes: d.config.maxOutputBytes,
        maxLogBytes: d.config.maxLogBytes,
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

  /** The working directory's content: the plan's bundle, the plan's files, the test's files (later wins). */
  private async inputsOf(spec: AttemptSpec): Promise<RunInputs | undefined> {
    let plan = this.planInputs.get(spec.planId);
    if (!plan) {
      plan = this.d.attempts.planInputs(spec.planId).then((p) => ({ bundleId: p?.bundleId ?? null, files: (p?.files ?? []) as WorkFile[] }));
      this.planInputs.set(spec.planId, plan);
      plan.catch(() => this.planInputs.delete(spec.planId)); // the run fails with it; the next one asks again
      if (this.planInputs.size > PLAN_INPUTS_KEPT) this.planInputs.delete(this.planInputs.keys().next().value!);
    }
    const { bundleId, files } = await plan;
    const merged = mergeFileLayers([files, (spec.files ?? []) as WorkFile[]]);
    if (!bundleId && merged.length === 0) return undefined;
    return { ...(bundleId ? { bundleDir: this.d.bundleTree(bundleId) } : {}), files: merged };
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
