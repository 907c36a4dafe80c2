import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaPGlite } from 'pglite-prisma-adapter';
import { PrismaClient } from '../generated/prisma/client';
import { acquireLockFile } from './lock-file';
import { applyMigrations, type SqlExecutor } from './migrate';
import { bestEffort } from '../infra/best-effort';

export type Prisma = PrismaClient;

export interface Database {
  prisma: PrismaClient;
  kind: 'pglite' | 'postgresql';
  /** Human-readable location (a directory or a URL without password). */
  location: string;
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  /** A postgresql:// URL; undefined: the embedded PGlite database in `dataDir`. */
  url?: string;
  dataDir: string;
  logger: { info(obj: object, msg: string): void; warn(obj: object, msg?: string): void };
  /** Connections of the pool (PostgreSQL server only). */
  poolSize?: number;
}

export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable URL)'; // the expected answer for a malformed URL: never echo it (it may hold a password)
  }
}

/** Opens the database, applies pending migrations and returns a Prisma client on it. */
export async function openDatabase(opts: DatabaseOptions): Promise<Database> {
  return opts.url ? openPostgres(opts.url, opts) : openPGlite(opts);
}

async function openPostgres(url: string, opts: DatabaseOptions): Promise<Database> {
  const pool = new pg.Pool({ connectionString: url, max: opts.poolSize ?? 10 });
  pool.on('error', (err) => opts.logger.warn({ err: err.message }, 'PostgreSQL: an idle connection failed (the pool replaces it)'));
  try {
    const client = await pool.connect();
    try {
      await applyMigrations(pgExecutor(client), opts.logger);
    } finally {
      client.release();
    }
  } catch (e) {
    await bestEffort(opts.logger, 'closing the PostgreSQL pool after a failed start', () => pool.end());
    throw new Error(`database ${redactUrl(url)}: ${(e as Error).message}`, { cause: e });
  }
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  return {
    prisma,
    kind: 'postgresql',
    location: redactUrl(url),
    async ping() {
      await pool.query('SELECT 1');
    },
    async close() {
      await bestEffort(opts.logger, 'disconnecting Prisma', () => prisma.$disconnect());
      await bestEffort(opts.logger, 'closing the PostgreSQL pool', () => pool.end());
    },
  };
}

function pgExecutor(client: pg.PoolClient): SqlExecutor {
  return {
    exec: async (sql) => {
      await client.query(sql);
    },
    query: async (sql, params) => (await client.query(sql, params as unknown[])).rows,
    lock: async () => {
      await client.query('SELECT pg_advisory_lock(727274)');
    },
    unlock: async () => {
      await client.query('SELECT pg_advisory_unlock(727274)');
    },
  };
}

async function openPGlite(opts: DatabaseOptions): Promise<Database> {
  const dir = join(opts.dataDir, 'pglite');
  mkdirSync(opts.dataDir, { recursive: true });
  const lock = await acquireLockFile(join(opts.dataDir, 'pglite.lock'), `the embedded database in ${dir}`, {
    onStale: (holder, life) => opts.logger.info({ holder, life }, 'took over the lock of the embedded database from a process that is gone'),
  });
  let pglite: PGlite | undefined;
  try {
    pglite = await PGlite.create(dir);
    const db = pglite;
    await applyMigrations(
      {
        exec: async (sql) => {
          await db.exec(sql);
        },
        query: async (sql, params) => (await db.query<Record<string, unknown>>(sql, params as unknown[])).rows,
        lock: async () => undefined, // the lock file already makes this process the only one
        unlock: async () => undefined,
      },
      opts.logger,
    );
  } catch (e) {
    await bestEffort(opts.logger, 'closing the embedded database after a failed start', () => pglite?.close());
    lock.release();
    throw new Error(`embedded database in ${dir}: ${(e as Error).message}`, { cause: e });
  }
  const db = pglite;
  const prisma = new PrismaClient({ adapter: new PrismaPGlite(db) });
  return {
    prisma,
    kind: 'pglite',
    location: dir,
    async ping() {
      await db.query('SELECT 1');
    },
    async close() {
      await bestEffort(opts.logger, 'disconnecting Prisma', () => prisma.$disconnect());
      await bestEffort(opts.logger, 'closing the embedded database', () => db.close());
      lock.release();
    },
  };
}
