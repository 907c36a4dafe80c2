// An orchestrator API in this process, on a fresh database (embedded PGlite or a PostgreSQL server) and a
// real Redis, isolated by a unique key prefix.
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID, createHash } from 'node:crypto';
import pino from 'pino';
import type { ApiServer } from '../../src/api/server';
import { createMaintenance, createReconciler, openCore, serveApi, type Core } from '../../src/app';
import type { MaintenanceJob } from '../../src/services/maintenance';
import { loadConfig } from '../../src/config/config';
import { openDatabase } from '../../src/db/database';
import { readMigrations } from '../../src/db/migrate';
import { startWorker, type RunningWorker } from '../../src/worker/worker';

export interface TestServer {
  url: string;
  core: Core;
  worker: RunningWorker | null;
  api: ApiServer;
  /** Retention and the store's size count, not started: a test runs a pass with `maintenance.pass()`. */
  maintenance: MaintenanceJob;
  dataDir: string;
  stop(): Promise<void>;
}

export const quietLogger = () => pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

/**
 * A PGlite data directory with every migration applied, made once per machine and copied for each
 * server: a first initdb takes ~6 s, a copy well under one.
 */
export async function freshPgliteDir(): Promise<string> {
  const key = createHash('sha256').update(readMigrations().map((m) => m.checksum).join()).digest('hex').slice(0, 12);
  const template = join(tmpdir(), `orch-pglite-template-${key}`);
  if (!existsSync(join(template, 'ready'))) {
    const building = `${template}.${process.pid}`;
    rmSync(building, { recursive: true, force: true });
    const db = await openDatabase({ dataDir: building, logger: quietLogger() });
    await db.close();
    mkdirSync(join(building, 'ready'));
    try {
      cpSync(building, template, { recursive: true });
    } finally {
      rmSync(building, { recursive: true, force: true });
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'orch-data-'));
  cpSync(template, dir, { recursive: true });
  rmSync(join(dir, 'ready'), { recursive: true, force: true });
  return dir;
}

export async function startTestServer(opts: {
  redisUrl: string;
  databaseUrl?: string;
  env?: Record<string, string>;
  /** Also run a worker (and the reconciler) in this process. */
  worker?: boolean;
  /** Runs on the opened core before the API starts (AUTH=on refuses to start without a token: make them here). */
  beforeServe?: (core: Core) => Promise<void>;
}): Promise<TestServer> {
  const dataDir = opts.databaseUrl ? mkdtempSync(join(tmpdir(), 'orch-data-')) : await freshPgliteDir();
  const config = loadConfig({
    DATA_DIR: dataDir,
    PORT: '0',
    REDIS_URL: opts.redisUrl,
    REDIS_PREFIX: `t${randomUUID().slice(0, 8)}`,
    ...(opts.databaseUrl ? { DATABASE_URL: opts.databaseUrl } : {}),
    ...opts.env,
  });
  const logger = quietLogger();
  const core = await openCore(config, logger);
  await opts.beforeServe?.(core);
  const api = await serveApi(core, { host: '127.0.0.1', port: 0 });
  const worker = opts.worker ? await startWorker(core, { lockMs: 3_000, graceMs: 2_000 }) : null;
  await worker?.ready; // its pools served, as a test expects of a worker it started
  const reconciler = opts.worker
    ? createReconciler(core)
    : null;
  await reconciler?.start();
  const maintenance = createMaintenance(core);
  return {
    url: api.url,
    core,
    api,
    maintenance,
    worker,
    dataDir,
    async stop() {
      await api.close();
      await worker?.stop();
      await reconciler?.stop();
      await maintenance.stop();
      await core.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
