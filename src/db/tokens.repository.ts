import type { Role } from '../domain/enums';
import type { PrismaClient } from '../generated/prisma/client';

/** A token as the API shows it (never its secret, never its hash). */
export interface TokenRow {
  id: string;
  name: string;
  role: Role;
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

const SHOWN = { id: true, name: true, role: true, createdAt: true, lastUsedAt: true, revokedAt: true } as const;

export class NameTaken extends Error {}

export class TokensRepository {
  constructor(
    private readonly prisma: PrismaClient,
    private readonly now: () => Date,
  ) {}

  async create(t: { id: string; name: string; role: Role; secretHash: string }): Promise<TokenRow> {
    try {
      return await this.prisma.apiToken.create({ data: { ...t, createdAt: this.now() }, select: SHOWN });
    } catch (e) {
      const err = e as { code?: string; message?: string; cause?: { code?: string } };
      if (err.code === 'P2002' || err.cause?.code === '23505' || /unique constraint|23505|duplicate key/i.test(String(err.message))) {
        throw new NameTaken(`a token named "${t.name}" exists already (names are never reused, also after a revocation)`);
      }
      throw e;
    }
  }

  /** The token whose secret has this hash, revoked or not. */
  byHash(secretHash: string): Promise<TokenRow | null> {
    return this.prisma.apiToken.findUnique({ where: { secretHash }, select: SHOWN });
  }

  /** The tokens of these ids that are revoked now. */
  async revokedAmong(ids: readonly string[]): Promise<string[]> {
    if (!ids.length) return [];
    const rows = await this.prisma.apiToken.findMany({ where: { id: { in: [...ids] }, revokedAt: { not: null } }, select: { id: true } });
    return rows.map((r) => r.id);
  }

  list(): Promise<TokenRow[]> {
    return this.prisma.apiToken.findMany({ orderBy: { createdAt: 'asc' }, select: SHOWN });
  }

  /** By id or, failing that, by name. */
  async find(idOrName: string): Promise<TokenRow | null> {
    const isUuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(idOrName);
    return (
      (isUuid ? await this.prisma.apiToken.findUnique({ where: { id: idOrName }, select: SHOWN }) : null) ??
      (await this.prisma.apiToken.findUnique({ where: { name: idOrName }, select: SHOWN }))
    );
  }

  /** Revokes it (once: a second revocation keeps the first time). Null: no such token. */
  async revoke(id: string): Promise<TokenRow | null> {
    await this.prisma.apiToken.updateMany({ where: { id, revokedAt: null }, data: { revokedAt: this.now() } });
    return this.prisma.apiToken.findUnique({ where: { id }, select: SHOWN });
  }

  /** Tokens that can be used (not revoked). */
  usable(): Promise<number> {
    return this.prisma.apiToken.count({ where: { revokedAt: null } });
  }

  /** Writes the last-use times gathered since the previous flush, in one statement. */
  async recordUse(used: ReadonlyMap<string, Date>): Promise<void> {
    if (!used.size) return;
    const rows = [...used].map(([id, at]) => ({ id, at: at.toISOString() }));
    await this.prisma.$executeRawUnsafe(
      `UPDATE "api_token" t SET "last_used_at" = GREATEST(COALESCE(t."last_used_at", x.at), x.at)
         FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, at timestamptz) WHERE t."id" = x.id`,
      JSON.stringify(rows),
    );
  }

  /** The tests still QUEUED of the plans this token submitted. */
  async queuedTestsOf(tokenId: string): Promise<number> {
    const rows = await this.prisma.$queryRawUnsafe<{ n: bigint | number | null }[]>(
      `SELECT COALESCE(SUM(c."n"), 0) AS n FROM "plan_status_count" c JOIN "execution_plan" p ON p."id" = c."plan_id"
        WHERE p."submitted_by_token_id" = $1::uuid AND p."status" IN ('QUEUED', 'RUNNING') AND c."status" = 'QUEUED'`,
      tokenId,
    );
    return Number(rows[0]?.n ?? 0);
  }

  /** Who submitted the plan: undefined when there is no such plan, null when nobody's (auth was off). */
  async planOwner(planId: string): Promise<string | null | undefined> {
    const row = await this.prisma.executionPlan.findUnique({ where: { id: planId }, select: { submittedByTokenId: true } });
    return row === null ? undefined : row.submittedByTokenId;
  }
}
