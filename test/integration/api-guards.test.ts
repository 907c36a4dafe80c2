// Issue 6, items 7 and 8: what a hostile page or client can make the API do. Each attack is refused
// before anything runs, with an error naming the limit and its variable, and the process stays up.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { gql, gqlOk } from '../helpers/gql';
import { startTestRedis, type TestRedis } from '../helpers/redis';
import { startTestServer, type TestServer } from '../helpers/server';

const SUBMIT = `mutation($input: SubmitPlanInput!) { submitPlan(input: $input) { id counts { total } } }`;
const unit = (name: string, script = 'true') => ({ name, type: 'UNIT', script });

interface Raw {
  status: number;
  body: string;
}

/** One HTTP request with exactly these headers (fetch will not send a Host of our choosing). */
function raw(url: string, o: { method?: string; path: string; headers?: Record<string, string>; body?: string | Buffer }): Promise<Raw> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: u.hostname, port: u.port, method: o.method ?? 'GET', path: o.path, headers: { ...(o.body !== undefined ? { 'content-type': 'application/json' } : {}), ...o.headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.on('error', reject);
    req.end(o.body);
  });
}

const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  raw(url, { method: 'POST', path: '/graphql', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });

/** A graphql-ws client whose upgrade carries these headers (as a browser's would carry Origin). */
function wsWith(url: string, headers: Record<string, string> = {}, localAddress?: string): Client {
  class Ws extends WebSocket {
    constructor(address: string, protocols?: string | string[]) {
      super(address, protocols, { headers, localAddress });
    }
  }
  return createClient({ url: `${url.replace(/^http/, 'ws')}/graphql`, webSocketImpl: Ws, retryAttempts: 0, lazy: true });
}

/** Runs one operation over graphql-ws: its data, or the error (GraphQL errors, a close event or an Error). */
function wsRun(client: Client, query: string, variables?: Record<string, unknown>): Promise<{ data?: any; error?: unknown }> {
  return new Promise((resolve) => {
    client.subscribe(
      { query, variables },
      {
        next: (v) => (v.errors ? resolve({ error: v.errors }) : resolve({ data: v.data })),
        error: (error) => resolve({ error }),
        complete: () => undefined,
      },
    );
  });
}

const errorText = (e: unknown): string => {
  if (Array.isArray(e)) return e.map((x) => x.message).join('; ');
  if (e instanceof Error) return e.message;
  if (e === undefined || e === null) return String(e);
  const ev = e as { code?: number; reason?: string; message?: string };
  return `${ev.code ?? ''} ${ev.reason ?? ''} ${ev.message ?? ''}`;
};

async function stillUp(url: string): Promise<void> {
  const r = await raw(url, { path: '/healthz' });
  assert.equal(r.status, 200, 'the process is still up');
  assert.ok((await gqlOk(url, `{ systemStatus { healthy } }`)).systemStatus);
}

/** The query of the issue: plan → tests(first: 50) → plan → …, `levels` deep. */
function nestedPlans(planId: string, levels: number): string {
  let inner = 'id name status';
  for (let i = 0; i < levels; i++) inner = `plan { id name tests(first: 50) { nodes { id name status ${inner} } } }`;
  return `{ plan(id: "${planId}") { tests(first: 50) { nodes { ${inner} } } } }`;
}

describe('API guards with the default limits', () => {
  let redis: TestRedis;
  let server: TestServer;
  let url: string;
  let port: string;
  let planId: string;
  const plansStored = async () => (await gqlOk(url, `{ plans { totalCount } }`)).plans.totalCount as number;

  before(async () => {
    redis = await startTestRedis();
    server = await startTestServer({ redisUrl: redis.url });
    url = server.url;
    port = new URL(url).port;
    planId = (await gqlOk(url, SUBMIT, { input: { name: 'seed', tests: Array.from({ length: 60 }, (_, i) => unit(`t${i}`)) } })).submitPlan.id;
  });
  after(async () => {
    await server?.stop();
    await redis?.stop();
  });

  it('answers 403 on every endpoint to a Host that is not a name of this server (DNS rebinding)', async () => {
    for (const path of ['/healthz', '/readyz', '/dashboard', '/graphiql', '/graphql?query=%7B__typename%7D', '/artifacts/x']) {
      const r = await raw(url, { path, headers: { host: `evil.example:${port}` } });
      assert.equal(r.status, 403, path);
      assert.match(JSON.parse(r.body).error, /^Host "evil\.example:\d+" is not a name of this server: add it to ALLOWED_HOSTS/, path);
    }
    const before = await plansStored();
    const r = await post(url, { query: SUBMIT, variables: { input: { name: 'rebound', tests: [unit('a')] } } }, { host: `evil.example:${port}` });
    assert.equal(r.status, 403);
    assert.equal(await plansStored(), before, 'nothing stored');
    // this machine's names and any IP address (a Kubernetes probe uses the pod IP) are served
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, 'LOCALHOST', '10.1.2.3:4000']) {
      assert.equal((await raw(url, { path: '/healthz', headers: { host } })).status, 200, host);
    }
  });

  it('answers 403 to a browser POST from a foreign Origin and stores nothing; its own pages pass', async () => {
    const before = await plansStored();
    const input = { name: 'csrf', tests: [unit('a')] };
    for (const origin of ['http://evil.example', `http://evil.example:${port}`, 'null', `http://localhost:${Number(port) + 1}`]) {
      const r = await post(url, { query: SUBMIT, variables: { input } }, { origin });
      assert.equal(r.status, 403, origin);
      assert.match(JSON.parse(r.body).error, /^Origin ".*" may not use this API: add it to ALLOWED_ORIGINS/, origin);
    }
    assert.equal(await plansStored(), before, 'nothing stored');
    for (const origin of [`http://127.0.0.1:${port}`, `http://localhost:${port}`]) {
      const r = await post(url, { query: `{ systemStatus { healthy } }` }, { origin, host: new URL(origin).host });
      assert.equal(r.status, 200, `${origin}: ${r.body}`);
    }
  });

  it('refuses a WebSocket upgrade from a foreign Origin or Host before anything runs, and stores nothing', async () => {
    const before = await plansStored();
    for (const headers of [{ origin: 'http://evil.example' }, { host: `evil.example:${port}` }] as Record<string, string>[]) {
      const evil = wsWith(url, headers);
      const r = await wsRun(evil, SUBMIT, { input: { name: 'hijacked', tests: [unit('a')] } });
      assert.equal(r.data, undefined, JSON.stringify(headers));
      assert.match(errorText(r.error), /403/, JSON.stringify(headers));
      await evil.dispose();
    }
    assert.equal(await plansStored(), before, 'nothing stored');
    // the dashboard's own connection (same origin) and a client without Origin work
    for (const headers of [{ origin: `http://127.0.0.1:${port}` }, {}] as Record<string, string>[]) {
      const ok = wsWith(url, headers);
      const r = await wsRun(ok, `{ systemStatus { healthy } }`);
      assert.equal(typeof r.data?.systemStatus?.healthy, 'boolean', errorText(r.error));
      await ok.dispose();
    }
  });

  it('refuses the nested plan/tests query of the issue by its cost, over HTTP and WebSocket, and stays up', async () => {
    for (const levels of [1, 2]) {
      const r = await gql(url, nestedPlans(planId, levels));
      assert.equal(r.data, undefined);
      assert.match(r.errors![0].message, /^query cost \d+ exceeds the limit of 10000 \(QUERY_COST_LIMIT\)/, `${levels}: ${r.errors?.[0]?.message}`);
      await stillUp(url);
    }
    const ws = wsWith(url);
    const r = await wsRun(ws, nestedPlans(planId, 2));
    assert.match(errorText(r.error), /^query cost \d+ exceeds the limit of 10000 \(QUERY_COST_LIMIT\)/);
    await ws.dispose();
    // one page of the largest size is a normal query
    const page = await gqlOk(url, `query($id: ID!) { plan(id: $id) { tests(first: 500) { nodes { id name status attempts result { exitCode stdout } } } } }`, { id: planId });
    assert.equal(page.plan.tests.nodes.length, 60);
    await stillUp(url);
  });

  it('refuses a query nested deeper than QUERY_DEPTH_LIMIT, over HTTP and WebSocket', async () => {
    // 12 levels of fields: test → plan → tests → nodes → plan → … (small pages keep the cost low)
    const levels = ['plan', 'tests(first: 1)', 'nodes', 'plan', 'tests(first: 1)', 'nodes', 'plan', 'tests(first: 1)', 'nodes', 'plan'];
    const deep = `query($id: ID!) { test(id: $id) { ${levels.join(' { ')} { id ${'} '.repeat(levels.length)}} }`;
    const r = await gql(url, deep, { id: '00000000-0000-4000-8000-000000000000' });
    assert.equal(r.errors?.[0]?.message, 'query depth 12 exceeds the limit of 10 (QUERY_DEPTH_LIMIT); nothing was run');
    const ws = wsWith(url);
    assert.equal(errorText((await wsRun(ws, deep, { id: '00000000-0000-4000-8000-000000000000' })).error), 'query depth 12 exceeds the limit of 10 (QUERY_DEPTH_LIMIT); nothing was run');
    await ws.dispose();
    await stillUp(url);
  });

  it('refuses 2,000 aliases of systemStatus (by tokens) and 100 (by aliases), over HTTP and WebSocket', async () => {
    const aliases = (n: number) => `{ ${Array.from({ length: n }, (_, i) => `a${i}: systemStatus { activeTests }`).join(' ')} }`;
    const ws = wsWith(url);
    for (const [n, message] of [
      [2000, 'the query has more than 5000 tokens, the limit (QUERY_TOKEN_LIMIT); nothing was run'],
      [100, 'the query has 100 aliases, more than the limit of 30 (QUERY_ALIAS_LIMIT); nothing was run'],
    ] as const) {
      const r = await gql(url, aliases(n));
      assert.equal(r.data, undefined);
      assert.equal(r.errors?.[0]?.message, message);
      assert.equal(errorText((await wsRun(ws, aliases(n))).error), message);
      await stillUp(url);
    }
    await ws.dispose();
    assert.ok((await gqlOk(url, aliases(5))).a4, 'a few aliases are fine');
  });

  it('refuses a body over 1 MiB unless it is a submitPlan, and still accepts a large plan', async () => {
    const pad = 'x'.repeat(2 * 1024 * 1024);
    const refused = [
      // a query with a huge variable
      JSON.stringify({ query: `query($x: String) { systemStatus { healthy } }`, variables: { x: pad } }),
      // a submitPlan prefix, then the last "query" member (the one JSON.parse keeps) is another operation
      `{"query":${JSON.stringify(SUBMIT)},"variables":{"x":${JSON.stringify(pad)}},"query":"{ systemStatus { healthy } }"}`,
      // a submitPlan whose query comes after its variables: the prefix does not show what it is
      JSON.stringify({ variables: { input: { name: 'late', tests: [unit('a', `echo ${pad.slice(0, 200_000)}`)] }, pad }, query: SUBMIT }),
    ];
    const before = await plansStored();
    for (const body of refused) {
      const r = await post(url, body);
      assert.equal(r.status, 413, r.body.slice(0, 300));
      assert.match(r.body, /more than 1 MiB \(MAX_BODY_BYTES\); only a submitPlan mutation may be larger, up to 256 MiB \(MAX_REQUEST_BYTES\)/);
    }
    assert.equal(await plansStored(), before);
    await stillUp(url);
    // 2,000 tests with 2 KB scripts: about 4 MB
    const tests = Array.from({ length: 2000 }, (_, i) => unit(`big-${i}`, `echo ${'y'.repeat(2000)}`));
    const body = JSON.stringify({ query: SUBMIT, variables: { input: { name: 'large', tests } } });
    assert.ok(body.length > 4_000_000);
    const r = await post(url, body);
    assert.equal(r.status, 200, r.body.slice(0, 300));
    const plan = JSON.parse(r.body).data.submitPlan;
    assert.equal(plan.counts.total, 2000);
    await gqlOk(url, `mutation($id: ID!) { cancelPlan(id: $id) { id } }`, { id: plan.id });
  });

  it(`refuses the ${21}st subscription on one connection, naming WS_MAX_SUBSCRIPTIONS_PER_CONNECTION`, async () => {
    const ws = wsWith(url);
    const values: unknown[] = [];
    const errors: unknown[] = [];
    const disposers = Array.from({ length: 21 }, () =>
      ws.subscribe({ query: `subscription { systemStatusUpdated { activeTests } }` }, { next: (v) => values.push(v), error: (e) => errors.push(e), complete: () => undefined }),
    );
    for (let i = 0; i < 200 && (values.length < 20 || errors.length < 1); i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(errors.length, 1, JSON.stringify(errors));
    assert.match(errorText(errors[0]), /already runs 20 operations, the limit \(WS_MAX_SUBSCRIPTIONS_PER_CONNECTION\)/);
    assert.equal(values.length, 20, 'the first 20 got the current state');
    disposers.forEach((d) => d());
    await ws.dispose();
    await stillUp(url);
  });

  it('answers introspection on a loopback server (GraphiQL needs it)', async () => {
    assert.equal((await gqlOk(url, `{ __schema { queryType { name } } }`)).__schema.queryType.name, 'Query');
  });
});

describe('API guards with ALLOWED_HOSTS, INTROSPECTION=off and small WebSocket limits', () => {
  let redis: TestRedis;
  let server: TestServer;
  let url: string;
  let port: string;

  before(async () => {
    redis = await startTestRedis();
    server = await startTestServer({
      redisUrl: redis.url,
      env: { ALLOWED_HOSTS: 'orch.example.com,.ci.example', INTROSPECTION: 'off', WS_MAX_CONNECTIONS: '3', WS_MAX_CONNECTIONS_PER_ADDRESS: '2' },
    });
    url = server.url;
    port = new URL(url).port;
  });
  after(async () => {
    await server?.stop();
    await redis?.stop();
  });

  it('serves the names in ALLOWED_HOSTS and the origins made from them, and nothing else', async () => {
    for (const host of ['orch.example.com', `orch.example.com:${port}`, 'ci.example', 'runner.ci.example:443']) {
      assert.equal((await raw(url, { path: '/healthz', headers: { host } })).status, 200, host);
    }
    for (const host of ['evil.example', 'orch.example.com.evil.example', 'xci.example']) {
      assert.equal((await raw(url, { path: '/healthz', headers: { host } })).status, 403, host);
    }
    // behind a proxy that rewrites Host, the page's origin is still one of the allowed names
    for (const origin of ['https://orch.example.com', `http://orch.example.com:${port}`]) {
      assert.equal((await post(url, { query: '{ systemStatus { healthy } }' }, { origin })).status, 200, origin);
    }
    assert.equal((await post(url, { query: '{ systemStatus { healthy } }' }, { origin: 'https://evil.example' })).status, 403);
  });

  it('refuses introspection when INTROSPECTION=off, over HTTP and WebSocket', async () => {
    const r = await gql(url, `{ __schema { queryType { name } } }`);
    assert.match(r.errors?.[0]?.message ?? '', /introspection/i);
    const ws = wsWith(url);
    assert.match(errorText((await wsRun(ws, `{ __type(name: "Query") { name } }`)).error), /introspection/i);
    await ws.dispose();
  });

  it('refuses WebSocket connections over WS_MAX_CONNECTIONS_PER_ADDRESS (429) and WS_MAX_CONNECTIONS (503)', async () => {
    const open = async (localAddress: string) => {
      // a subscription keeps its connection open (a lazy client closes when nothing runs)
      const c = wsWith(url, {}, localAddress);
      return { c, r: await wsRun(c, `subscription { systemStatusUpdated { healthy } }`) };
    };
    const a1 = await open('127.0.0.1');
    const a2 = await open('127.0.0.1');
    assert.ok(a1.r.data && a2.r.data);
    const a3 = await open('127.0.0.1');
    assert.match(errorText(a3.r.error), /429/, JSON.stringify(a3.r));
    const b1 = await open('127.0.0.2');
    assert.ok(b1.r.data, errorText(b1.r.error));
    const c1 = await open('127.0.0.3');
    assert.match(errorText(c1.r.error), /503/);
    for (const x of [a1, a2, a3, b1, c1]) await x.c.dispose();
    // closed connections free their places (the server hears the closes a moment later)
    let again = await open('127.0.0.1');
    for (let i = 0; i < 100 && !again.r.data; i++) {
      await again.c.dispose();
      await new Promise((r) => setTimeout(r, 100));
      again = await open('127.0.0.1');
    }
    assert.ok(again.r.data, errorText(again.r.error));
    await again.c.dispose();
    await stillUp(url);
  });
});
