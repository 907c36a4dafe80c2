// The composition root: builds every part from the configuration and hands out explicit dependencies.
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from './config/config';
import { openDatabase, type Database } from './db/database';
import { BundlesRepository } from './db/bundles.repository';
import { EnvironmentsRepository } from './db/environments.repository';
import { ImagesRepository } from './db/images.repository';
import { PlansRepository } from './db/plans.repository';
import { StatusRepository } from './db/status.repository';
import { TestsRepository } from './db/tests.repository';
import { EventBus } from './events/bus';
import { UsageStore } from './events/usage-store';
import { prepareDataDir, repairDataDirModes } from './infra/data-dir';
import { startEmbeddedRedis, redisOptionsFromUrl, type EmbeddedRedis } from './infra/redis-server';
import { TestQueues } from './queue/producer';
import type { ServiceDeps } from './services/context';
import { EnvironmentService } from './services/environment.service';
import { ImagesService } from './services/images.service';
import { PlanService } from './services/plan.service';
import { StatusService } from './services/status.service';
import { TestService } from './services/test.service';
import type { Services } from './api/context';
import { LiveEvents } from './api/live';
import { createSchema } from './api/schema';
import { startApiServer, type ApiServer } from './api/server';
import { isUuid } from './db/cursor';
import { RunsRepository } from './db/runs.repository';
import { ArtifactStore } from './infra/artifact-store';
import { BundleStore } from './infra/bundle/bundle-store';
import { BundleService } from './services/bundle.service';
import { join } from 'node:path';
import { Reconciler } from './services/reconciler';
import { AttemptsService } from './services/attempts.service';

export interface Core {
  config: Config;
  logger: Logger;
  db: Database;
  redis: Redis;
  events: EventBus;
  queues: TestQueues;
  deps: ServiceDeps;
  services: Services;
  /** Connection options for further Redis connections (BullMQ workers need their own). */
  redisUrl: string;
  /** Where an artifact's bytes are, by artifact id. */
  artifactPath(id: string): Promise<{ path: string; name: string } | null>;
  close(): Promise<void>;
}

/** Opens the database (migrating it), connects to Redis (starting one when none is configured). */
export async function openCore(config: Config, logger: Logger): Promise<Core> {
  const closers: (() => Promise<void>)[] = [];
  const closeAll = async () => {
    for (const close of closers.reverse()) await close().catch((err: Error) => logger.warn({ err }, 'error while closing'));
  };
  try {
    prepareDataDir(config.dataDir, logger); // 0700 before anything is written in it
    // the database first: its lock file says whether another process owns this DATA_DIR
    const db = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir, logger });
    closers.push(() => db.close());
    logger.info({ database: db.kind, location: db.location }, 'database ready');

    let redisUrl = config.redisUrl;
    if (!redisUrl) {
      const embedded: EmbeddedRedis = await startEmbeddedRedis({ dataDir: config.dataDir, logger });
      closers.push(() => embedded.stop());
      redisUrl = embedded.url;
      logger.info({ socket: embedded.socketPath, pid: embedded.pid }, 'embedded redis-server running');
    }
    // PGlite writes its initial files 0666, and an older DATA_DIR may hold anything: make it all private.
    await repairDataDirModes(config.dataDir, logger, [config.bundleDir]);
    const redis = new Redis({ ...redisOptionsFromUrl(redisUrl), maxRetriesPerRequest: null, lazyConnect: true });
    redis.on('error', (err) => logger.warn({ err: err.message }, 'redis connection error'));
    closers.push(async () => {
      await redis.quit().catch((err: Error) => {
        logger.warn({ err: err.message }, 'closing the Redis connection gracefully failed; disconnecting it');
        redis.disconnect();
      });
    });
    await redis.connect().catch((e: Error) => {
      throw new Error(`cannot reach Redis at ${redisUrl}: ${e.message}`);
    });

    const events = new EventBus(redis, config.redisPrefix, (err, context) => logger.warn({ err: err.message, ...context }, 'event bus error'));
    closers.push(() => events.close());
    const queues = new TestQueues(redis, config.redisPrefix, config.pools.map((p) => p.name));
    closers.push(() => queues.close());

    const now = () => new Date(); // the one clock of the services and the repositories
    const deps: ServiceDeps = {
      config,
      logger,
      plans: new PlansRepository(db.prisma, now),
      tests: new TestsRepository(db.prisma),
      status: new StatusRepository(db.prisma),
      runs: new RunsRepository(db.prisma, now),
      environments: new EnvironmentsRepository(db.prisma, now),
      images: new ImagesRepository(db.prisma, now),
      bundles: new BundlesRepository(db.prisma),
      bundleStore: new BundleStore(config.bundleDir),
      queues,
      events,
      usage: new UsageStore(redis, config.redisPrefix),
      pingDatabase: () => db.ping(),
      now,
    };
    const services: Services = {
      plans: new PlanService(deps),
      tests: new TestService(deps),
      status: new StatusService(deps),
      environments: new EnvironmentService(deps),
      images: new ImagesService(deps),
      bundles: new BundleService(deps),
    };
    const runs = deps.runs;
    const store = new ArtifactStore(join(config.dataDir, 'artifacts'));
    const artifactPath = async (id: string) => {
      const a = isUuid(id) ? await runs.artifact(id) : null;
      return a ? { path: store.pathOf(a.storageKey), name: a.name } : null;
    };
    return { config, logger, db, redis, events, queues, deps, services, redisUrl, artifactPath, close: closeAll };
  } catch (e) {
    await closeAll();
    throw e;
  }
}

/** The HTTP and WebSocket API on the core's services. */
export async function serveApi(core: Core, at: { host: string; port: number }): Promise<ApiServer> {
  return startApiServer({
    schema: await createSchema(),
    services: core.services,
    live: new LiveEvents(core.events, core.services.status, core.logger),
    logger: core.logger,
    host: at.host,
    port: at.port,
    maxRequestBytes: core.config.maxRequestBytes,
    security: core.config.apiSecurity,
    ready: async () => {
      await core.db.ping();
      await core.redis.ping();
    },
    artifactPath: core.artifactPath,
  });
}

/** The reconciler of an API process: repairs drift between the database and the queues. */
export function createReconciler(core: Core): Reconciler {
  return new Reconciler({ ...core.deps, attempts: new AttemptsService(core.deps) });
}
