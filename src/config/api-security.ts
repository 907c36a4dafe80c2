import { isIP } from 'node:net';
import { z } from 'zod';

/**
 * What the API refuses before it runs anything (issue 6, items 7 and 8): foreign Host and Origin
 * headers, and queries, bodies and WebSocket use beyond these limits. Every limit has a variable.
 */
export interface ApiSecurity {
  /**
   * Host names (besides IP literals and localhost, always allowed) the Host header may carry; a name
   * starting with "." also allows its subdomains. null: ALLOWED_HOSTS=*, no Host check at all.
   */
  allowedHosts: string[] | null;
  /**
   * Origins (scheme://host[:port]) a browser page may call the API from, besides the server's own
   * (an Origin naming the same host and port as the Host header). undefined: made from the allowed host
   * names (http and https, default port or the server's). null: ALLOWED_ORIGINS=*, no Origin check.
   */
  allowedOrigins?: string[] | null;
  /** Whether __schema/__type queries are answered (GraphiQL needs them). */
  introspection: boolean;
  query: QueryLimits;
  /** Body limit of every HTTP request but a submitPlan mutation (which may be up to MAX_REQUEST_BYTES). */
  maxBodyBytes: number;
  ws: WsLimits;
}

export interface QueryLimits {
  /** Nesting of fields in one operation. */
  depth: number;
  /** Estimated cost: 1 per field, times the page size (`first`) below a connection. */
  cost: number;
  /** Aliased fields in one operation. */
  aliases: number;
  /** Lexical tokens in one document (parsing stops there). */
  tokens: number;
}

export interface WsLimits {
  /** Open graphql-ws connections of this process. */
  maxConnections: number;
  /** Open graphql-ws connections from one remote address. */
  maxConnectionsPerAddress: number;
  /** Operations running at once on one connection. */
  maxSubscriptionsPerConnection: number;
}

const unsetIfEmpty = (v: unknown) => (v === '' ? undefined : v);
const int = (min: number, max: number, fallback: number) =>
  z.preprocess(unsetIfEmpty, z.coerce.number().int().min(min).max(max).default(fallback));
const list = (what: string, item: (x: string) => boolean) =>
  z.preprocess(
    unsetIfEmpty,
    z
      .string()
      .transform((s) => s.split(',').map((x) => x.trim().toLowerCase()).filter(Boolean))
      .refine((xs) => (xs.length === 1 && xs[0] === '*') || xs.every(item), `a comma-separated list of ${what}, or *`)
      .optional(),
  );

const HOST_NAME = /^\.?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?$/;
const isOrigin = (x: string) => {
  try {
    const u = new URL(x);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.origin === x.replace(/\/$/, '');
  } catch {
    return false; // not a URL at all: listed as a configuration problem
  }
};

/** The variables, merged into the configuration's schema. */
export const apiSecurityEnv = {
  ALLOWED_HOSTS: list('host names (".example.com" for a domain and its subdomains)', (x) => HOST_NAME.test(x)),
  ALLOWED_ORIGINS: list('origins like https://ci.example.com[:port]', isOrigin),
  INTROSPECTION: z.preprocess(unsetIfEmpty, z.enum(['on', 'off']).optional()),
  QUERY_DEPTH_LIMIT: int(1, 1000, 10),
  QUERY_COST_LIMIT: int(1, 100_000_000, 10_000),
  QUERY_ALIAS_LIMIT: int(0, 100_000, 30),
  QUERY_TOKEN_LIMIT: int(100, 10_000_000, 5_000),
  MAX_BODY_BYTES: int(1024, Number.MAX_SAFE_INTEGER, 1024 * 1024),
  WS_MAX_CONNECTIONS: int(1, 1_000_000, 500),
  WS_MAX_CONNECTIONS_PER_ADDRESS: int(1, 1_000_000, 100),
  WS_MAX_SUBSCRIPTIONS_PER_CONNECTION: int(1, 100_000, 20),
};

type Env = z.infer<z.ZodObject<typeof apiSecurityEnv>>;

/** 127.0.0.0/8, ::1, localhost: the API then serves only this machine. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || (isIP(h) === 4 && h.startsWith('127.'));
}

export function apiSecurityFrom(e: Env, host: string): ApiSecurity {
  const star = (xs: string[] | undefined) => xs?.length === 1 && xs[0] === '*';
  const hosts = e.ALLOWED_HOSTS ?? [];
  // HOST given as a name (not an address, not a wildcard address) is a name of this server
  const own = !isIP(host.replace(/^\[|\]$/g, '')) && !isLoopbackHost(host) ? [host.toLowerCase()] : [];
  return {
    allowedHosts: star(e.ALLOWED_HOSTS) ? null : [...new Set([...hosts, ...own])],
    allowedOrigins: star(e.ALLOWED_ORIGINS) ? null : e.ALLOWED_ORIGINS?.map((o) => new URL(o).origin),
    // GraphiQL needs introspection; the schema is public (schema.graphql) but a server others reach
    // answers it only when asked to
    introspection: e.INTROSPECTION ? e.INTROSPECTION === 'on' : isLoopbackHost(host),
    query: { depth: e.QUERY_DEPTH_LIMIT, cost: e.QUERY_COST_LIMIT, aliases: e.QUERY_ALIAS_LIMIT, tokens: e.QUERY_TOKEN_LIMIT },
    maxBodyBytes: e.MAX_BODY_BYTES,
    ws: {
      maxConnections: e.WS_MAX_CONNECTIONS,
      maxConnectionsPerAddress: e.WS_MAX_CONNECTIONS_PER_ADDRESS,
      maxSubscriptionsPerConnection: e.WS_MAX_SUBSCRIPTIONS_PER_CONNECTION,
    },
  };
}
