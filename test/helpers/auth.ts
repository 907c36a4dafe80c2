// Calls with a token: GraphQL over HTTP with `Authorization: Bearer`, graphql-ws with the token in the
// connection_init payload, and what the socket was closed with.
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import type { GqlResponse } from './gql';

export async function gqlAs<T = any>(baseUrl: string, token: string | null, query: string, variables?: Record<string, unknown>): Promise<GqlResponse<T> & { status: number }> {
  const res = await fetch(`${baseUrl}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token === null ? {} : { authorization: `Bearer ${token}` }) },
    body: JSON.stringify({ query, variables }),
  });
  return { status: res.status, ...((await res.json()) as GqlResponse<T>) };
}

export const codes = (r: GqlResponse) => (r.errors ?? []).map((e) => e.extensions?.code);

export interface WsAs {
  client: Client;
  /** Resolves with the close event's code and reason once the socket closes. */
  closed: Promise<{ code: number; reason: string }>;
}

/** A graphql-ws client sending `authorization` (null: no payload at all) in connection_init. */
export function wsAs(baseUrl: string, authorization: string | null): WsAs {
  let done: (e: { code: number; reason: string }) => void = () => undefined;
  const closed = new Promise<{ code: number; reason: string }>((r) => (done = r));
  const client = createClient({
    url: `${baseUrl.replace(/^http/, 'ws')}/graphql`,
    webSocketImpl: WebSocket,
    retryAttempts: 0,
    lazy: true,
    connectionParams: authorization === null ? undefined : { authorization },
    on: { closed: (e) => done({ code: (e as { code: number }).code, reason: String((e as { reason?: string }).reason ?? '') }) },
  });
  return { client, closed };
}

/** Runs one query or mutation over graphql-ws: its result, or what failed (GraphQL errors or the close event). */
export function wsRun(client: Client, query: string, variables?: Record<string, unknown>): Promise<{ data?: any; errors?: any[]; closed?: { code: number; reason: string } }> {
  return new Promise((resolve) => {
    client.subscribe(
      { query, variables },
      {
        next: (v) => resolve(v.errors ? { errors: v.errors as any[] } : { data: v.data }),
        error: (e) => resolve(Array.isArray(e) ? { errors: e } : { closed: { code: (e as { code: number }).code, reason: String((e as { reason?: string }).reason ?? '') } }),
        complete: () => undefined,
      },
    );
  });
}
