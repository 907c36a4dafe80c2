// Tokens: made (the secret is returned once, only its hash is kept), listed, revoked. Used by the API
// (createToken, revokeToken, tokens, viewer) and by `orchestrator token …` on the database directly.
import { randomUUID } from 'node:crypto';
import { tokenNameProblem, type Caller } from '../../domain/access';
import { ROLES, type Role } from '../../domain/enums';
import { NameTaken, type TokenRow, type TokensRepository } from '../../db/tokens.repository';
import type { EventPublisher } from '../../events/bus';
import { UserError } from '../errors';
import { hashSecret, newSecret } from './token-secret';

/** A token as the API shows it: JSON-safe. */
export interface TokenView {
  id: string;
  name: string;
  role: Role;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

export const tokenView = (t: TokenRow, lastUsed?: Date): TokenView => {
  const last = lastUsed && (!t.lastUsedAt || lastUsed > t.lastUsedAt) ? lastUsed : t.lastUsedAt;
  return {
    id: t.id,
    name: t.name,
    role: t.role,
    createdAt: t.createdAt.toISOString(),
    lastUsedAt: last ? last.toISOString() : null,
    revokedAt: t.revokedAt ? t.revokedAt.toISOString() : null,
  };
};

export interface TokenServiceDeps {
  tokens: TokensRepository;
  /** null: no Redis here (the CLI without REDIS_URL): API processes notice within TOKEN_RECHECK_MS. */
  events: EventPublisher | null;
  /** Local effect of a revocation (the API's authenticator), before it is published. */
  onRevoked?(id: string): void;
  /** Last uses this process has not written yet (the authenticator's). */
  pendingUse?(id: string): Date | undefined;
}

export class TokenService {
  constructor(private readonly d: TokenServiceDeps) {}

  async create(name: string, role: string): Promise<{ token: string; apiToken: TokenView }> {
    const problem = tokenNameProblem(name);
    if (problem) throw new UserError('BAD_USER_INPUT', problem, { field: 'name' });
    if (!(ROLES as readonly string[]).includes(role)) throw new UserError('BAD_USER_INPUT', `role must be one of ${ROLES.join(', ')}`, { field: 'role' });
    const secret = newSecret();
    try {
      const row = await this.d.tokens.create({ id: randomUUID(), name, role: role as Role, secretHash: hashSecret(secret) });
      return { token: secret, apiToken: tokenView(row) };
    } catch (e) {
      if (e instanceof NameTaken) throw new UserError('BAD_USER_INPUT', e.message, { field: 'name' });
      throw e;
    }
  }

  async list(): Promise<TokenView[]> {
    return (await this.d.tokens.list()).map((t) => tokenView(t, this.d.pendingUse?.(t.id)));
  }

  /** By id (or, for the CLI, by name). Stops it at once in this process, then tells the others. */
  async revoke(idOrName: string): Promise<TokenView> {
    const found = typeof idOrName === 'string' && idOrName.length <= 200 ? await this.d.tokens.find(idOrName) : null;
    if (!found) throw new UserError('NOT_FOUND', `no token with id or name ${JSON.stringify(String(idOrName).slice(0, 80))}`, { id: idOrName });
    const row = (await this.d.tokens.revoke(found.id)) ?? found;
    this.d.onRevoked?.(row.id);
    await this.d.events?.publish('token', { revokedId: row.id });
    return tokenView(row, this.d.pendingUse?.(row.id));
  }

  /** The token of this request (null with authentication off). */
  async viewer(caller: Caller | null): Promise<TokenView | null> {
    if (!caller) return null;
    const row = await this.d.tokens.find(caller.tokenId);
    return row ? tokenView(row, this.d.pendingUse?.(row.id)) : null;
  }

  usable(): Promise<number> {
    return this.d.tokens.usable();
  }
}
