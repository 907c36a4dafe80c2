import { z } from 'zod';
import { isLoopbackHost } from './api-security';

/**
 * Tokens and fair use (issue 11). AUTH=off (the default) is allowed only on a loopback address: one
 * person's machine. With AUTH=on every request carries a token (orchestrator token create), and each
 * token gets the limits below; they hold across API processes (counted in Redis) but the subscription
 * limit, which is per API process.
 */
export interface AuthConfig {
  enabled: boolean;
  /** The window of the rate limits (RATE_LIMIT_WINDOW_MS, default 60 s). */
  windowMs: number;
  /** Mutations (each root field of one) per token per window (RATE_LIMIT_MUTATIONS, default 120). */
  mutationsPerWindow: number;
  /** POST /bundles per token per window (RATE_LIMIT_UPLOADS, default 30). */
  uploadsPerWindow: number;
  /** Tests of one token's plans waiting in the queues at once (MAX_QUEUED_TESTS_PER_TOKEN, default 100,000: two of the largest plans). */
  maxQueuedTests: number;
  /** Subscriptions one token runs at once on one API process (MAX_SUBSCRIPTIONS_PER_TOKEN, default 200). */
  maxSubscriptions: number;
  /** How often an API process re-reads the revocation of the tokens it holds (a safety net beside Redis pub/sub) and writes lastUsedAt. */
  recheckMs: number;
}

const unsetIfEmpty = (v: unknown) => (v === '' ? undefined : v);
const int = (min: number, max: number, fallback: number) =>
  z.preprocess(unsetIfEmpty, z.coerce.number().int().min(min).max(max).default(fallback));

export const authEnv = {
  AUTH: z.preprocess(unsetIfEmpty, z.enum(['on', 'off']).default('off')),
  RATE_LIMIT_WINDOW_MS: int(100, 86_400_000, 60_000),
  RATE_LIMIT_MUTATIONS: int(1, 10_000_000, 120),
  RATE_LIMIT_UPLOADS: int(1, 10_000_000, 30),
  MAX_QUEUED_TESTS_PER_TOKEN: int(1, 100_000_000, 100_000),
  MAX_SUBSCRIPTIONS_PER_TOKEN: int(1, 1_000_000, 200),
  TOKEN_RECHECK_MS: int(100, 600_000, 5_000),
};

type Env = z.infer<z.ZodObject<typeof authEnv>>;

export function authFrom(e: Env): AuthConfig {
  return {
    enabled: e.AUTH === 'on',
    windowMs: e.RATE_LIMIT_WINDOW_MS,
    mutationsPerWindow: e.RATE_LIMIT_MUTATIONS,
    uploadsPerWindow: e.RATE_LIMIT_UPLOADS,
    maxQueuedTests: e.MAX_QUEUED_TESTS_PER_TOKEN,
    maxSubscriptions: e.MAX_SUBSCRIPTIONS_PER_TOKEN,
    recheckMs: e.TOKEN_RECHECK_MS,
  };
}

/** Why an API may not listen on `host` as configured, or null. Checked before anything is opened. */
export function listenRefusal(auth: AuthConfig, host: string): string | null {
  if (auth.enabled || isLoopbackHost(host)) return null;
  return (
    `refusing to start: HOST=${host} is not a loopback address and AUTH is off, so anyone who can reach the port could ` +
    `submit scripts and read every result. Set AUTH=on (create the first token with "orchestrator token create --name admin --role ADMIN"), ` +
    'or listen on 127.0.0.1'
  );
}

export const NO_TOKEN_REFUSAL =
  'refusing to start: AUTH=on but the database holds no usable (unrevoked) token, so nobody could call the API. ' +
  'Create one first: orchestrator token create --name admin --role ADMIN';
