import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';

export interface GqlResponse<T = any> {
  data?: T;
  errors?: { message: string; extensions?: { code?: string; [k: string]: unknown } }[];
}

/** POSTs a GraphQL operation; returns the whole response (data and errors). */
export async function gql<T = any>(baseUrl: string, query: string, variables?: Record<string, unknown>): Promise<GqlResponse<T>> {
  const res = await fetch(`${baseUrl}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  return (await res.json()) as GqlResponse<T>;
}

/** Like gql, but fails on any error and returns data. */
export async function gqlOk<T = any>(baseUrl: string, query: string, variables?: Record<string, unknown>): Promise<T> {
  const r = await gql<T>(baseUrl, query, variables);
  if (r.errors?.length) throw new Error(`GraphQL errors: ${JSON.stringify(r.errors)}`);
  return r.data as T;
}

export interface Subscription<T> {
  /** Every value received so far. */
  values: T[];
  /** Resolves with the first value (after those already taken by earlier calls) matching `pred`. */
  next(pred?: (v: T) => boolean, timeoutMs?: number): Promise<T>;
  close(): void;
}

export function wsClient(baseUrl: string): Client {
  return createClient({ url: `${baseUrl.replace(/^http/, 'ws')}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true });
}

/**
 * Subscribes and waits until the server is listening: graphql-ws gives no acknowledgement per
 * subscription, so `ready` polls with a probe that the caller supplies (or waits a short moment).
 */
export function subscribe<T = any>(client: Client, query: string, variables: Record<string, unknown> = {}): Subscription<T> {
  const values: T[] = [];
  let cursor = 0;
  const waiters: (() => void)[] = [];
  let failure: unknown = null;
  const dispose = client.subscribe<T>(
    { query, variables },
    {
      next: (v) => {
        if (v.errors) failure = new Error(JSON.stringify(v.errors));
        else values.push(Object.values(v.data ?? {})[0] as T); // the one root field's value
        waiters.splice(0).forEach((w) => w());
      },
      error: (e) => {
        failure = e;
        waiters.splice(0).forEach((w) => w());
      },
      complete: () => undefined,
    },
  );
  return {
    values,
    async next(pred = () => true, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        while (cursor < values.length) {
          const v = values[cursor++];
          if (pred(v)) return v;
        }
        if (failure) throw failure instanceof Error ? failure : new Error(JSON.stringify(failure));
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no matching subscription value within ${timeoutMs} ms; got ${JSON.stringify(values).slice(0, 2000)}`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
    },
    close: dispose,
  };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
