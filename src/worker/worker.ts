// The worker process: one BullMQ consumer per pool it serves (concurrency = the pool's capacity on this
// host), a warm pool of environments each, a heartbeat that makes it count in systemStatus, and an ear
// for cancellations.

import { hostname, availableParallelism } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { DelayedError, Worker as BullWorker, WaitingError } from 'bullmq';
import type { Core } from '../app';
import { RemoteDriver } from '../environments/remote/remote.driver';
import type { EnvironmentDriver, EnvironmentKind } from '../environments/driver';
import { ResourceManager } from '../environments/resource-manager';
import { BundleStore } from '../infra/bundle/bundle-store';
import { bestEffort } from '../infra/best-effort';
import { redisOptionsFromUrl } from '../infra/redis-server';
import { parseRunTest, queueName } from '../queue/catalog';
import { AttemptsService } from '../services/attempts.service';
import { environmentRecords } from './environment-records';
import { TestExecutor } from './executor';
import { HostImages, imagesOfPools } from './host-images';

export interface WorkerOptions {
  /** Pools to serve; default: every configured pool this host has a driver for. */
  pools?: string[];
  /** Drivers by kind; default: the container driver. */
  drivers?: Partial<Record<EnvironmentKind, EnvironmentDriver>>;
  /** How long a stopping worker lets running tests finish before it kills them and hands them back. */
  graceMs?: number;
  /** BullMQ lock of a running job (default WORKER_LOCK_MS); a dead worker's jobs come back after about this long. */
  lockMs?: number;
  /** The images of this host; default: built and looked up in IMAGE_DIR (host-images.ts). */
  images?: HostImages;
}

export interface RunningWorker {
  id: string;
  /** The pools served so far: each joins once its environments are provisioned. */
  pools: string[];
  /** Settles once every pool whose image was READY at start is served (or given up). */
  ready: Promise<void>;
  executor: TestExecutor;
  stop(): Promise<void>;
}

const WATCHDOG_MS = 2_000;
/** How soon a test waiting for its image is tried again. */
const IMAGE_WAIT_MS = 2_000;

export async function startWorker(core: Core, o: WorkerOptions = {}): Promise<RunningWorker> {
  const { config, logger, events } = core;
  const id = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const log = logger.child({ workerId: id });
  // Each configured driver in a driver host process: forking sandboxes from this (large) process would
  // block it ~20 ms a test. Each gets its own configuration section (config.drivers, src/config).
  const drivers: Partial<Record<EnvironmentKind, EnvironmentDriver>> = o.drivers ?? {};
  if (!o.drivers) {
    for (const [kind, section] of Object.entries(config.drivers) as [EnvironmentKind, unknown][]) {
      if (section !== undefined) drivers[kind] = new RemoteDriver(kind, section, log.child({ driver: kind.toLowerCase() }));
    }
  }
  const { environments } = core.deps;
  const stopping = new AbortController();
  const publish = (view: Parameters<typeof events.emit<'environment'>>[1]) => events.emit('environment', view);

  const wanted = config.pools.filter((p) => !o.pools || o.pools.includes(p.name));
  for (const name of o.pools ?? []) if (!config.pools.some((p) => p.name === name)) throw new Error(`worker: no pool named "${name}" is configured`);
  const managers = new Map<string, ResourceManager>();
  const records = environmentRecords(environments, { workerId: id, host: hostname(), publish });
  for (const pool of wanted) {
    const driver = drivers[pool.kind];
    if (!driver) {
      log.warn({ pool: pool.name, kind: pool.kind }, 'no driver for this kind of environment on this host: pool not served');
      continue;
    }
    managers.set(pool.name, new ResourceManager({ pool, driver, records, logger: log }));
  }

  // The images of its pools on this host: what is up to date is READY now, the rest builds in the background.
  const images =
    o.images ??
    new HostImages({
      imageDir: config.imageDir,
      definitions: config.images,
      build: config.buildImages,
      debianMirror: config.imageBuild.debianMirror,
      buildEnv: config.imageBuild.proxyEnv,
      report: async (name, report) => {
        await core.services.images.report(name, report);
        events.emit('system', { reason: `image ${name} ${report.status}` }); // dashboards show the images component
      },
      logger: log,
    });
  await images.prepare(imagesOfPools([...managers.values()].map((m) => m.pool), config.images));

  await environments.registerWorker({ id, host: hostname(), pid: process.pid, pools: [] });
  // Whether this host can serve a pool is checked now for the pools whose default image is READY (their
  // environments check their health in it), later for those whose image is still building.
  const readyNow = [...managers.values()].filter((m) => images.status(m.pool.image) === 'READY');
  const later = [...managers.values()].filter((m) => images.status(m.pool.image) !== 'READY');
  const checked = await Promise.allSettled(readyNow.map((m) => m.preflight()));
  const refused: string[] = [];
  checked.forEach((r, i) => {
    const m = readyNow[i];
    if (r.status === 'rejected') {
      log.error({ err: r.reason, pool: m.pool.name }, 'cannot serve this pool on this host');
      refused.push(`pool "${m.pool.name}": ${(r.reason as Error).message}`);
      managers.delete(m.pool.name);
    }
  });
  if (managers.size === 0) {
    await bestEffort(log, 'recording the worker as stopped', () => environments.stopWorker(id));
    throw new Error(`worker: this host can serve none of its pools:\n  - ${refused.join('\n  - ') || 'no pool of a kind this host has a driver for'}`);
  }
  /** The pools served now: each once its environments are provisioned. */
  const pools: string[] = [];

  const attempts = new AttemptsService({ ...core.deps, logger: log, store: core.deps.store });
  const bundles = new BundleStore(config.bundleDir);
  const executor = new TestExecutor({
    config,
    logger: log,
    attempts,
    events,
    managers,
    images,
    workerId: id,
    stopping: stopping.signal,
    bundleTree: (bundleId) => bundles.treeOf(bundleId),
  });

  const offCancel = await events.on('cancel', ({ testId }) => {
    if (executor.abort(testId, 'cancel')) log.info({ testId }, 'killing a cancelled test');
  });

  // Heartbeat; and a watchdog that stops runs whose test moved on without us hearing (a lost
  // cancel message, or a newer attempt elsewhere): the database decides.
  const heartbeat = setInterval(() => {
    environments.heartbeat(id).catch((err: Error) => log.warn({ err: err.message }, 'heartbeat failed'));
  }, config.workerHeartbeatMs);
  const watchdog = setInterval(() => {
    void reportUsage();
    if (!executor.running.size) return;
    attempts.states([...executor.running.keys()]).then(
      (states) => {
        for (const [testId, r] of executor.running) {
          const t = states.get(testId);
          if (!t || t.status === 'CANCELLED') executor.abort(testId, 'cancel');
          else if (t.attempts > r.attempt) executor.abort(testId, 'fenced');
        }
      },
      (err: Error) => log.warn({ err: err.message }, 'the watchdog could not read the running tests: it checks again next time'),
    );
  }, WATCHDOG_MS);

  // live use of busy environments, for `environments { utilization }` (expires if this worker dies)
  async function reportUsage(): Promise<void> {
    const entries: { environmentId: string; usage: NonNullable<Awaited<ReturnType<ResourceManager['usage']>>> }[] = [];
    for (const m of managers.values()) {
      for (const lease of m.busy()) {
        const usage = await bestEffort(log, `reading the use of environment ${lease.handle.id}`, () => m.usage(lease.handle.id), null);
        if (usage) entries.push({ environmentId: lease.handle.id, usage });
      }
    }
    await core.deps.usage.put(entries, WATCHDOG_MS * 3).catch((err: Error) => log.warn({ err: err.message }, 'reporting usage failed'));
  }

  const connection = { ...redisOptionsFromUrl(core.redisUrl), maxRetriesPerRequest: null };
  const lockMs = o.lockMs ?? config.workerLockMs;
  const consumers: BullWorker[] = [];
  const closing = new AbortController();
  const serve = (pool: string) => {
    const capacity = managers.get(pool)!.pool.capacity;
    const w = new BullWorker(
      queueName(pool),
      async (job, token) => {
        const end = await executor.execute(parseRunTest(job.data));
        if (end === 'wait-for-image' && token) {
          // Its image is being built here: tried again in a moment, holding no environment meanwhile.
          await job.moveToDelayed(Date.now() + IMAGE_WAIT_MS, token);
          throw new DelayedError();
        }
        if (end === 'handed-back' && token) {
          // Handed back at shutdown: not completed (a new job would queue behind later submissions) but
          // moved back to waiting. BullMQ puts an active job moved back at the head of its priority
          // (score priority·2³², counter 0: moveJobFromActiveToWait/pushBackJobWithPriority), so it
          // keeps its priority and runs before every equal-priority test submitted after it.
          await job.moveToWait(token);
          throw new WaitingError();
        }
      },
      {
        connection,
        prefix: `${config.redisPrefix}:bull`,
        concurrency: capacity,
        lockDuration: lockMs,
        stalledInterval: Math.max(1_000, Math.floor(lockMs / 2)),
        // a test's own retry budget (attempts) decides when a test that keeps losing its worker ends in ERROR
        maxStalledCount: 1_000,
      },
    );
    w.on('failed', (job, err) => log.error({ err, pool, testId: job?.data?.testId }, 'job failed'));
    w.on('error', (err) => log.warn({ err: err.message, pool }, 'queue consumer error'));
    consumers.push(w);
  };
  // Each pool is served once its environments are provisioned, on its own: the containers do not wait
  // for a VM to boot. A pool waiting for its default image is checked and served once the image is built;
  // one whose image failed is served too, without environments: its tests end in ERROR with the build's
  // message (they need no sandbox).
  const startPool = async (m: ResourceManager, check: boolean): Promise<void> => {
    if (check) {
      const status = await images.settled(m.pool.image);
      if (closing.signal.aborted) return;
      if (status !== 'READY') {
        log.error({ pool: m.pool.name, image: m.pool.image }, 'the default image of this pool failed to build: its tests that need it end in ERROR');
        return servePool(m);
      }
      try {
        await m.preflight();
      } catch (err) {
        log.error({ err, pool: m.pool.name }, 'cannot serve this pool on this host');
        managers.delete(m.pool.name);
        return;
      }
    }
    await m.provisionAll();
    if (!closing.signal.aborted) await servePool(m);
  };
  const servePool = async (m: ResourceManager): Promise<void> => {
    pools.push(m.pool.name);
    serve(m.pool.name);
    await bestEffort(log, 'registering a pool served', () => environments.registerWorker({ id, host: hostname(), pid: process.pid, pools }));
    events.emit('system', { reason: `pool ${m.pool.name} started` });
  };
  const startingNow = readyNow.filter((m) => managers.has(m.pool.name)).map((m) => startPool(m, false));
  const starting = [...startingNow, ...later.map((m) => startPool(m, true))];
  const ready = Promise.all(startingNow).then(() => undefined);
  events.emit('system', { reason: 'worker started' });
  log.info({ pools: [...managers.keys()], hostCpus: availableParallelism(), sandboxUser: config.sandboxUser }, 'worker started');

  let stopped: Promise<void> | null = null;
  return {
    id,
    pools,
    ready,
    executor,
    stop() {
      stopped ??= (async () => {
        log.info({ running: executor.running.size }, 'worker stopping: no new tests; running ones may finish');
        closing.abort(); // pools still waiting for an image are not started any more
        // a pool still provisioning (a VM booting) gives up now instead of finishing for nothing
        await Promise.all([...managers.values()].filter((m) => !pools.includes(m.pool.name)).map((m) => m.stop()));
        await images.stop();
        await Promise.all(starting);
        const consumersClosed = Promise.all(consumers.map((c) => c.close()));
        const grace = setTimeout(() => {
          for (const testId of executor.running.keys()) executor.abort(testId, 'shutdown');
          stopping.abort();
        }, o.graceMs ?? 10_000);
        await consumersClosed;
        clearTimeout(grace);
        await attempts.flush();
        stopping.abort();
        clearInterval(heartbeat);
        clearInterval(watchdog);
        offCancel();
        await Promise.all([...managers.values()].map((m) => m.stop()));
        if (!o.drivers) for (const driver of Object.values(drivers)) await bestEffort(log, `closing the ${driver?.kind} driver`, () => driver?.close?.()); // ours only
        for (const e of (await bestEffort(log, 'recording the worker as stopped', () => environments.stopWorker(id), [])) ?? []) publish(e);
        events.emit('system', { reason: 'worker stopped' });
        log.info('worker stopped');
      })();
      return stopped;
    },
  };
}
