// The CLI's side of the API: GraphQL over HTTP POST and subscriptions over graphql-ws, with every way
// they can fail turned into one line (a CliError, exit code 2) that names the URL and the cause in words.

import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { oneLine } from './one-line';

/** The command could not do its job: the message is one line for the terminal, the exit code 2. */
export class CliError extends Error {
  override readonly name = 'CliError';
  readonly exitCode = 2;
}

const CAUSES: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset by the server',
  ETIMEDOUT: 'connection timed out',
  UND_ERR_CONNECT_TIMEOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  EADDRNOTAVAIL: 'address not available',
  EPIPE: 'the server closed the connection',
  UND_ERR_SOCKET: 'the server closed the connection',
  UND_ERR_HEADERS_TIMEOUT: 'no answer in time',
  UND_ERR_BODY_TIMEOUT: 'the answer stopped coming',
};

/** The cause of a failed fetch (or WebSocket), in words. */
export function networkCause(err: unknown, host: string, timeoutSeconds: number): string {
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) return `no answer within ${timeoutSeconds} s`;
  // fetch throws TypeError("fetch failed") with the system error as its cause; "localhost" tries
  // several addresses and gives an AggregateError of them
  let cause = (err as { cause?: unknown })?.cause ?? err;
  const errors = (cause as { errors?: unknown[] })?.errors;
  if (!(cause as { code?: unknown })?.code && Array.isArray(errors) && errors.length) cause = errors[0];
  const code = String((cause as { code?: unknown })?.code ?? '');
  if (code === 'ENOTFOUND') return `host "${oneLine(host, 100)}" not found (DNS)`;
  if (code === 'EAI_AGAIN') return `the name "${oneLine(host, 100)}" could not be looked up (DNS did not answer)`;
  if (CAUSES[code]) return CAUSES[code];
  const message = oneLine((cause as Error)?.message ?? String(cause), 200);
  if (/CERT|SSL|TLS|certificate/i.test(code) || /certificate|ssl|tls/i.test(message)) {
    // OpenSSL's "80BC…:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:…": the reason
    const reason = /SSL routines:[^:]*:([^:]+)/.exec(message)?.[1];
    return reason ? `TLS: ${reason}${/wrong version number/.test(reason) ? ' (is the server really https?)' : ''}` : `TLS: ${message}`;
  }
  return message;
}

interface GraphqlError {
  message?: unknown;
  extensions?: { code?: unknown };
}

/** "CODE: message" of a GraphQL error list (the first, and how many more). */
export function describeGraphqlErrors(errors: readonly GraphqlError[], fallbackCode = 'ERROR'): string {
  const first = errors[0] ?? {};
  const code = typeof first.extensions?.code === 'string' ? first.extensions.code : fallbackCode;
  const message = typeof first.message === 'string' ? first.message : JSON.stringify(first.message ?? null);
  const more = errors.length > 1 ? ` (and ${errors.length - 1} more error${errors.length > 2 ? 's' : ''})` : '';
  return `${oneLine(code, 60)}: ${oneLine(message)}${more}`;
}

export interface ApiClient {
  readonly url: string;
  readonly wsUrl: string;
  /** Data of a query or mutation; a CliError for anything else. `timeoutMs` caps this request's wait. */
  request<T = any>(query: string, variables: object, timeoutMs?: number): Promise<T>;
  /**
   * A graphql-ws client, connecting at once, that reports its end, unless disposed, as one line (a
   * CliError) through the handler given to `onError` (once; an end before that waits for it).
   */
  subscriptions(): Subscriptions;
}

export interface Subscriptions {
  client: Client;
  /** Resolves once the server has acknowledged connection_init (the token); rejects with the one line. */
  ready: Promise<void>;
  onError(handler: (e: CliError) => void): void;
  /** For a subscription's error sink: reports a close event or GraphQL errors as the one line. */
  fail(e: unknown): void;
  dispose(): Promise<void>;
}

export interface ClientOptions {
  /** the whole command's --timeout, for the messages */
  timeoutSeconds: number;
  /** epoch ms by which every request must have been answered (the --timeout of the whole command) */
  deadline: number;
  /** sent as `Authorization: Bearer TOKEN` and in graphql-ws's connection_init; never printed */
  token?: string;
  /** SIGINT/SIGTERM: aborts what may be given up (a bundle upload) */
  stop?: AbortSignal;
}

/** The refusal of a token, in words: 401/UNAUTHENTICATED/4401 and 403/FORBIDDEN/4403. */
export const TOKEN_HINT = 'give a valid token with --token or ORCHESTRATOR_TOKEN';
export const ROLE_HINT = "the token's role does not allow it";
const hintFor = (forbidden: boolean) => (forbidden ? ROLE_HINT : TOKEN_HINT);
const AUTH_CODES = new Set(['UNAUTHENTICATED', 'FORBIDDEN']);

/** The HTTP headers every request of the CLI carries. */
export function authHeaders(token: string | undefined): Record<string, string> {
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** Milliseconds left until `deadline` (at least 1: AbortSignal.timeout(0) would never fire as a timeout). */
export const remaining = (deadline: number) => Math.max(1, deadline - Date.now());

export function apiClient(baseUrl: string, opts: ClientOptions): ApiClient {
  const url = baseUrl;
  const endpoint = `${baseUrl}/graphql`;
  const host = new URL(baseUrl).hostname;
  const wsUrl = endpoint.replace(/^http/, 'ws');
  const { timeoutSeconds, deadline, token } = opts;

  async function request<T>(query: string, variables: object, timeoutMs?: number): Promise<T> {
    let res: Response;
    let text: string;
    // a request of its own time (a cancel after the deadline) or of what is left of the --timeout
    const capped = timeoutMs !== undefined;
    const waitMs = timeoutMs ?? remaining(deadline);
    try {
      const signal = AbortSignal.timeout(waitMs);
      res = await fetch(endpoint, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json', ...authHeaders(token) }, body: JSON.stringify({ query, variables }), signal });
      text = await res.text();
    } catch (e) {
      const timedOut = e instanceof Error && (e.name === 'TimeoutError' || e.name === 'AbortError');
      throw new CliError(`cannot reach ${url}: ${timedOut && capped ? `no answer within ${Math.round(waitMs / 100) / 10} s` : networkCause(e, host, timeoutSeconds)}`);
    }
    let parsed: unknown = null;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = null; // not JSON: answered below with the status and content type
    }
    const body = parsed as { data?: unknown; errors?: unknown } | null;
    const status = `HTTP ${res.status}${res.statusText ? ` ${oneLine(res.statusText, 60)}` : ''}`;
    if (Array.isArray(body?.errors) && body.errors.length) {
      const errors = body.errors as GraphqlError[];
      const line = describeGraphqlErrors(errors, `HTTP ${res.status}`);
      const code = errors[0]?.extensions?.code;
      if ((typeof code === 'string' && AUTH_CODES.has(code)) || res.status === 401 || res.status === 403) throw new CliError(`${line} (${hintFor(code === 'FORBIDDEN' || res.status === 403)})`);
      throw new CliError(line);
    }
    if (res.status === 401 || res.status === 403) throw new CliError(`${endpoint} refused the request: ${status} (${hintFor(res.status === 403)})`);
    if (body === null || typeof body !== 'object') {
      const type = res.headers.get('content-type');
      throw new CliError(`${endpoint} answered ${status}${type ? ` (${oneLine(type.split(';')[0], 60)})` : ''}, not a GraphQL response`);
    }
    if (!res.ok || !body.data || typeof body.data !== 'object') throw new CliError(`${endpoint} answered ${status} without data, not a GraphQL response`);
    return body.data as T;
  }

  function subscriptions(): Subscriptions {
    let connected = false;
    let over = false;
    let handler: ((e: CliError) => void) | null = null;
    let pending: CliError | null = null;
    let acked!: () => void;
    let refused!: (e: CliError) => void;
    const ready = new Promise<void>((resolve, reject) => {
      acked = resolve;
      refused = reject;
    });
    ready.catch(() => undefined); // also reported through onError
    const onError = (e: CliError) => {
      refused(e);
      if (handler) handler(e);
      else pending = e;
    };
    const fail = (e: unknown) => {
      if (over) return;
      over = true;
      const why = wsCause(e, host);
      const code = (e as { code?: unknown })?.code;
      const gqlCode = Array.isArray(e) ? (e[0] as GraphqlError | undefined)?.extensions?.code : undefined;
      if (code === 4401 || code === 4403) onError(new CliError(`${wsUrl} refused the token: ${why} (${hintFor(code === 4403)})`));
      else if (typeof gqlCode === 'string' && AUTH_CODES.has(gqlCode)) onError(new CliError(`${wsUrl} refused the subscription: ${why} (${hintFor(gqlCode === 'FORBIDDEN')})`));
      else onError(new CliError(connected ? `lost the connection to ${wsUrl} while waiting: ${why}` : `cannot open the WebSocket ${wsUrl}: ${why}`));
    };
    const client = createClient({
      url: wsUrl,
      webSocketImpl: WebSocket,
      // connected before the plan is submitted: a refused token stops it before a plan exists, and the
      // subscriptions are in place sooner after it
      lazy: false,
      onNonLazyError: (e) => fail(e), // its default prints the event to the console: the one line says it
      retryAttempts: 0, // a lost connection ends the wait: exit 2, not a silent gap in the updates
      connectionParams: token ? { authorization: `Bearer ${token}` } : undefined,
      on: {
        connected: () => {
          connected = true;
          acked();
        },
        error: fail,
        closed: fail,
      },
    });
    return {
      client,
      ready,
      onError(h) {
        handler = h;
        if (pending) h(pending);
      },
      fail,
      async dispose() {
        const reported = over;
        over = true;
        try {
          await client.dispose();
        } catch (e) {
          // graphql-ws rejects dispose() with the close event that ended the connection: that end has been
          // reported once through onError already; one that comes now is the first word of it
          if (!reported) onError(new CliError(`lost the connection to ${wsUrl}: ${wsCause(e, host)}`));
        }
      },
    };
  }

  return { url, wsUrl, request, subscriptions };
}

/** What ended a WebSocket: a close event (code, reason), an error event, or GraphQL errors. */
export function wsCause(e: unknown, host: string): string {
  if (Array.isArray(e)) return describeGraphqlErrors(e as GraphqlError[]);
  const ev = e as { code?: unknown; reason?: unknown; error?: unknown; message?: unknown };
  if (typeof ev?.code === 'number') {
    const reason = typeof ev.reason === 'string' && ev.reason ? `: ${oneLine(ev.reason, 200)}` : '';
    if (ev.code === 1006) return `the connection was cut (code 1006)${reason}`;
    if (ev.code === 1001) return `the server is going away (code 1001)${reason}`;
    if (ev.code === 4401) return `closed with code 4401 (unauthorized)${reason}`;
    if (ev.code === 4403) return `closed with code 4403 (forbidden)${reason}`;
    return `closed with code ${ev.code}${reason}`;
  }
  if (ev?.error) return networkCause(ev.error, host, 0);
  if (ev instanceof Error || typeof ev?.message === 'string') return networkCause(ev, host, 0);
  return oneLine(String(e), 200);
}
