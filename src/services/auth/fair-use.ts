// Fair use per token (AUTH=on): rate limits on mutations and uploads (counted in Redis, so they hold
// across API processes) and a cap on the tests a token has waiting. A refusal is a RATE_LIMITED error
// saying when to try again (extensions.retryAfter, in seconds) and stores nothing.
import type { Caller } from '../../domain/access';
import type { AuthConfig } from '../../config/auth';
import type { TokensRepository } from '../../db/tokens.repository';
import type { RateLimiter } from '../../infra/rate-limiter';
import { UserError } from '../errors';

/** When a token's queue is full: a guess of when some of its tests will have run. */
const QUEUE_RETRY_SECONDS = 30;

export class FairUse {
  constructor(
    private readonly limiter: RateLimiter,
    private readonly tokens: TokensRepository,
    private readonly config: AuthConfig,
  ) {}

  /** One mutation field of `caller`; throws RATE_LIMITED past RATE_LIMIT_MUTATIONS. */
  async mutation(caller: Caller | null): Promise<void> {
    if (!caller) return;
    await this.take(caller, 'mutation', this.config.mutationsPerWindow, 'mutations', 'RATE_LIMIT_MUTATIONS');
  }

  /** One POST /bundles of `caller`; throws RATE_LIMITED past RATE_LIMIT_UPLOADS. */
  async upload(caller: Caller | null): Promise<void> {
    if (!caller) return;
    await this.take(caller, 'upload', this.config.uploadsPerWindow, 'bundle uploads', 'RATE_LIMIT_UPLOADS');
  }

  /** Before a plan of `adding` tests is stored: throws RATE_LIMITED when the token's queue would pass MAX_QUEUED_TESTS_PER_TOKEN. */
  async queue(caller: Caller | null, adding: number): Promise<void> {
    if (!caller) return;
    const max = this.config.maxQueuedTests;
    const queued = await this.tokens.queuedTestsOf(caller.tokenId);
    if (queued + adding <= max) return;
    throw new UserError(
      'RATE_LIMITED',
      `token "${caller.name}" has ${queued} tests queued; ${adding} more would pass its limit of ${max} (MAX_QUEUED_TESTS_PER_TOKEN): ` +
        `nothing was stored; submit again once some have run (retry in about ${QUEUE_RETRY_SECONDS} s)`,
      { retryAfter: QUEUE_RETRY_SECONDS, limit: 'MAX_QUEUED_TESTS_PER_TOKEN', queued, max },
    );
  }

  private async take(caller: Caller, kind: string, limit: number, what: string, variable: string): Promise<void> {
    const r = await this.limiter.take(`${kind}:${caller.tokenId}`, limit, this.config.windowMs);
    if (r.allowed) return;
    const retryAfter = Math.ceil(r.retryAfterMs / 1000);
    throw new UserError(
      'RATE_LIMITED',
      `token "${caller.name}" made ${limit} ${what} in ${this.config.windowMs / 1000} s, its limit (${variable}): nothing was done; retry in ${retryAfter} s`,
      { retryAfter, limit: variable },
    );
  }
}
