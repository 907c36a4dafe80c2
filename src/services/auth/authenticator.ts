// Which token a request carries, without a database query per request: a token once looked up is
// kept in memory. A revocation reaches every API process at once over Redis (the `token` event), and
// each process also re-reads, every TOKEN_RECHECK_MS, whether the tokens it holds were revoked (a
// revocation made by the CLI without Redis, or an event lost with a connection). lastUsedAt is gathered
// here and written in one statement per recheck, not once per request.
import type { Logger } from 'pino';
import type { Caller } from '../../domain/access';
import { TOKEN_PATTERN } from '../../domain/access';
import type { TokenRow, TokensRepository } from '../../db/tokens.repository';
import type { EventBus } from '../../events/bus';
import { bestEffort } from '../../infra/best-effort';
import { hashSecret } from './token-secret';

/** Tokens kept in memory per process; beyond, the oldest looked-up one is dropped (and read again when used). */
const CACHE_SIZE = 10_000;

export interface AuthenticatorDeps {
  tokens: TokensRepository;
  events: EventBus;
  logger: Logger;
  now(): Date;
  recheckMs: number;
}

export class Authenticator {
  /** By secret hash: the valid tokens seen. */
  private readonly cache = new Map<string, TokenRow>();
  private readonly used = new Map<string, Date>();
  private readonly listeners = new Set<(id: string) => void>();
  private readonly heldBy = new Set<() => Iterable<string>>();
  private timer: NodeJS.Timeout | null = null;
  private off: (() => void) | null = null;

  constructor(private readonly d: AuthenticatorDeps) {}

  async start(): Promise<void> {
    this.off = await this.d.events.on('token', (e) => this.revoked(String(e.revokedId)));
    this.timer = setInterval(() => void bestEffort(this.d.logger, 'rechecking tokens and writing their last use', () => this.recheck()), this.d.recheckMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.off?.();
    await bestEffort(this.d.logger, 'writing the last use of tokens', () => this.flushUse());
  }

  /** The caller whose secret this is, or null (unknown, revoked, malformed). */
  async authenticate(secret: string | null): Promise<Caller | null> {
    if (secret === null || !TOKEN_PATTERN.test(secret)) return null; // a malformed one costs no query
    const hash = hashSecret(secret);
    let row = this.cache.get(hash);
    if (!row) {
      const found = await this.d.tokens.byHash(hash);
      if (!found || found.revokedAt) return null;
      row = found;
      this.cache.set(hash, row);
      if (this.cache.size > CACHE_SIZE) this.cache.delete(this.cache.keys().next().value as string);
    }
    this.used.set(row.id, this.d.now());
    return { tokenId: row.id, name: row.name, role: row.role };
  }

  /** Called with the id of each revoked token, in this process, as soon as it is known. */
  onRevoked(fn: (id: string) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Tokens held open elsewhere (WebSocket connections), rechecked with the cached ones. */
  holding(ids: () => Iterable<string>): void {
    this.heldBy.add(ids);
  }

  /** A last use not written yet. */
  pendingUse(id: string): Date | undefined {
    return this.used.get(id);
  }

  /** Forgets the token here and tells the listeners (idempotent). */
  revoked(id: string): void {
    for (const [hash, row] of this.cache) if (row.id === id) this.cache.delete(hash);
    for (const fn of this.listeners) {
      try {
        fn(id);
      } catch (err) {
        this.d.logger.error({ err, tokenId: id }, 'a revocation listener failed');
      }
    }
  }

  /** One pass: writes the last uses, reads which held tokens were revoked meanwhile. */
  async recheck(): Promise<void> {
    await this.flushUse();
    const ids = new Set<string>();
    for (const row of this.cache.values()) ids.add(row.id);
    for (const held of this.heldBy) for (const id of held()) ids.add(id);
    for (const id of await this.d.tokens.revokedAmong([...ids])) this.revoked(id);
  }

  private async flushUse(): Promise<void> {
    if (!this.used.size) return;
    const batch = new Map(this.used);
    this.used.clear();
    try {
      await this.d.tokens.recordUse(batch);
    } catch (e) {
      for (const [id, at] of batch) if (!this.used.has(id)) this.used.set(id, at); // kept for the next pass
      throw e;
    }
  }
}
