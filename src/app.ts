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
import { RunsRepository } from './db/runs.repository';
import { DirectoryArtifactStore } from './infra/artifact-store';
import { ArtifactUsage, CountedArtifactStore } from './infra/artifact-usage';
import { ArtifactsRepository } from './db/artifacts.repository';
import { ArtifactsService } from './services/artifacts.service';
import { RetentionService } from './services/retention.service';
import { MaintenanceJob } from './services/maintenance';
import { tryLease } from './infra/redis-lock';
import { BundleStore } from './infra/bundle/bundle-store';
import { BundleService } from './services/bundle.service';
import { Reconciler } from './services/reconciler';
import { AttemptsService } from './services/attempts.service';
import { TokensRepository } from './db/tokens.repository';
import { RateLimiter } from './infra/rate-limiter';
import { FairUse } from './services/auth/fair-use';
import { Authenticator } from './services/auth/authenticator';
import { TokenService } from './services/auth/token.service';
import { NO_TOKEN_REFUSAL } from './config/auth';

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
  /** Which token a request carries (used only with AUTH=on; started by serveApi). */
  authenticator: Authenticator;
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
    const directory = new DirectoryArtifactStore(config.artifactDir);
    await directory.init();
    const storeUsage = new ArtifactUsage(redis, config.redisPrefix);
    const tokens = new TokensRepository(db.prisma, now);
    const authenticator = new Authenticator({ tokens, events, logger, now, recheckMs: config.auth.recheckMs });
    closers.push(() => authenticator.stop());
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
      artifacts: new ArtifactsRepository(db.prisma),
      store: new CountedArtifactStore(directory, storeUsage, logger),
      storeUsage,
      tokens,
      fairUse: new FairUse(new RateLimiter(redis, config.redisPrefix), tokens, config.auth),
      pingDatabase: () => db.ping(),
      now,
    };
    const bundles = new BundleService(deps);
    const services: Services = {
      plans: new PlanService(deps),
      tests: new TestService(deps),
      status: new StatusService(deps),
      environments: new EnvironmentService(deps),
      images: new ImagesService(deps),
      artifacts: new ArtifactsService(deps),
      retention: new RetentionService({ ...deps, bundles }),
      bundles,
      tokens: new TokenService({ tokens, events, onRevoked: (id) => authenticator.revoked(id), pendingUse: (id) => authenticator.pendingUse(id) }),
      fairUse: deps.fairUse,
      authenticator,
    };
    return { config, logger, db, redis, events, queues, deps, services, redisUrl, authenticator, close: closeAll };
  } catch (e) {
    await closeAll();
    throw e;
  }
}

/** The HTTP and WebSocket API on the core's services. */
export async function serveApi(core: Core, at: { host: string; port: number }): Promise<ApiServer> {
  if (core.config.auth.enabled) {
    if ((await core.services.tokens.usable()) === 0) throw new Error(NO_TOKEN_REFUSAL);
    await core.authenticator.start();
  }
  return startApiServer({
    schema: await createSchema(),
    services: core.services,
    live: new LiveEvents(core.events, core.services.status, core.logger),
    logger: core.logger,
    host: at.host,
    port: at.port,
    maxRequestBytes: core.config.maxRequestBytes,
    security: core.config.apiSecurity,
    auth: core.config.auth,
    ready: async () => {
      await core.db.ping();
      await core.redis.ping();
    },
  });
}

/** The periodic retention and store scan of an API process (one at a time across processes). */
export function createMaintenance(core: Core): MaintenanceJob {
  const { redis, config } = core;
  return new MaintenanceJob({
    ...core.deps,
    retention: core.services.retention,
    tryLease: (name, ttlMs) => tryLease(redis, `${config.redisPrefix}:lease:${name}`, ttlMs, () => core.logger.warn({ lease: name }, 'lease lost during a pass')),
  });
}

/** The reconciler of an API process: repairs drift between the database and the queues. */
export function createReconciler(core: Core): Reconciler {
  return new Reconciler({ ...core.deps, attempts: new AttemptsService(core.deps) });
}
