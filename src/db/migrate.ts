// Applies the committed migrations (prisma/migrations/<name>/migration.sql, Prisma's layout) at start,
// with bookkeeping in Prisma's own `_prisma_migrations` table, so `prisma migrate deploy` on a machine
// with Prisma's schema engine agrees on what is applied.

import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { bestEffort } from '../infra/best-effort';

export interface SqlExecutor {
  exec(sql: string): Promise<void>;
  query(sql: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
  /** Serialises concurrent migrators (an advisory lock on a server). */
  lock(): Promise<void>;
  unlock(): Promise<void>;
}

export interface Migration {
  name: string;
  sql: string;
  checksum: string;
}

/** prisma/migrations beside the compiled program (dist/src/db → ../../../prisma) or the source tree. */
export function migrationsDir(): string {
  for (const candidate of [resolve(__dirname, '../../../prisma/migrations'), resolve(__dirname, '../../prisma/migrations')]) {
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`prisma/migrations not found near ${__dirname}`);
}

export function readMigrations(dir = migrationsDir()): Migration[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(dir, d.name, 'migration.sql')))
    .map((d) => d.name)
    .sort()
    .map((name) => {
      const sql = readFileSync(join(dir, name, 'migration.sql'), 'utf8');
      return { name, sql, checksum: createHash('sha256').update(sql).digest('hex') };
    });
}

const BOOKKEEPING = `
CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
);`;

export async function applyMigrations(db: SqlExecutor, logger: { info(obj: object, msg: string): void; warn(obj: object, msg?: string): void }, dir?: string): Promise<string[]> {
  const migrations = readMigrations(dir);
  await db.lock();
  try {
    await db.exec(BOOKKEEPING);
    const rows = await db.query(
      `SELECT migration_name, checksum, finished_at FROM "_prisma_migrations" WHERE rolled_back_at IS NULL`,
    );
    const applied = new Map(rows.map((r) => [String(r.migration_name), r]));
    const known = new Set(migrations.map((m) => m.name));
    const unknown = [...applied.keys()].filter((n) => !known.has(n));
    if (unknown.length) {
      throw new Error(`the database has migrations this program does not know (${unknown.join(', ')}): it was written by a newer version`);
    }
    const done: string[] = [];
    for (const m of migrations) {
      const row = applied.get(m.name);
      if (row) {
        if (!row.finished_at) throw new Error(`migration ${m.name} was started and failed earlier; repair the database by hand`);
        if (row.checksum !== m.checksum) logger.info({ migration: m.name }, 'migration file changed since it was applied (checksum differs)');
        continue;
      }
      const id = randomUUID();
      const started = Date.now();
      await db.exec('BEGIN');
      try {
        await db.exec(m.sql);
        await db.query(
          `INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, applied_steps_count) VALUES ($1, $2, now(), $3, 1)`,
          [id, m.checksum, m.name],
        );
        await db.exec('COMMIT');
      } catch (e) {
        await bestEffort(logger, `rolling back migration ${m.name}`, () => db.exec('ROLLBACK'));
        throw new Error(`migration ${m.name} failed: ${(e as Error).message}`, { cause: e });
      }
      logger.info({ migration: m.name, ms: Date.now() - started }, 'applied migration');
      done.push(m.name);
    }
    return done;
  } finally {
    await bestEffort(logger, 'releasing the migration lock', () => db.unlock());
  }
}
