// Issue 11: a few thousand malformed and hostile requests against an API with AUTH=on — random JSON,
// wrong types, deep nesting, huge strings, unicode, NUL, lone surrogates, random and almost-right
// tokens, over HTTP and graphql-ws. Every answer is an error, the server stays up and answers, and
// what it stores (plans, tests, tokens, bundles) is unchanged. Seeded: FUZZ_SEED replays a run.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { startTestRedis, type TestRedis } from '../helpers/redis';
import { startTestServer, type TestServer } from '../helpers/server';

const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
const HTTP_CASES = Number(process.env.FUZZ_HTTP ?? 3000);
const WS_CASES = Number(process.env.FUZZ_WS ?? 300);

/** mulberry32: small, seeded, good enough to pick cases. */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  return { next, int, pick };
}

const PIECES = ['\0', '\uD800', '\uDFFF', '💥', '\u202E', 'e\u0301', '漢字', '\n', '\r\n', '\t', '"', '\\', '{', '}', '$', '...', 'mutation', '__schema', '<script>', "'; DROP TABLE api_token; --", '%00', '\u0007', '\uFEFF'];

function hostileString(r: ReturnType<typeof rng>): string {
  switch (r.int(5)) {
    case 0:
      return Array.from({ length: r.int(20) }, () => r.pick(PIECES)).join('');
    case 1:
      return String.fromCharCode(...Array.from({ length: 1 + r.int(64) }, () => r.int(0x10000)));
    case 2:
      return r.pick(PIECES).repeat(1 + r.int(200_000)); // up to a few hundred KB
    case 3:
      return `orch_${String.fromCharCode(...Array.from({ length: 43 }, () => 33 + r.int(94)))}`;
    default:
      return r.pick(PIECES) + 'x'.repeat(r.int(300)) + '\0';
  }
}

function randomJson(r: ReturnType<typeof rng>, depth = 0): unknown {
  const k = r.int(depth > 4 ? 5 : 8);
  switch (k) {
    case 0:
      return null;
    case 1:
      return r.next() < 0.5;
    case 2:
      return r.pick([0, -0, 1e308, -1e308, 2 ** 53 + 1, -1, 3.14, 2 ** 31, -(2 ** 31) - 1]);
    case 3:
    case 4:
      return hostileString(r);
    case 5:
    case 6:
      return Array.from({ length: r.int(5) }, () => randomJson(r, depth + 1));
    default:
      return Object.fromEntries(Array.from({ length: r.int(5) }, () => [r.pick(['query', 'variables', 'operationName', 'extensions', '__proto__', 'constructor', hostileString(r).slice(0, 20)]), randomJson(r, depth + 1)]));
  }
}

/** Every byte of the UTF-8 of `s` percent-encoded (a lone surrogate becomes U+FFFD's bytes). */
const pathPart = (s: string) => [...Buffer.from(s, 'utf8')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');

const deep = (n: number, open: string, close: string, inner = '1') => open.repeat(n) + inner + close.repeat(n);

interface Case {
  headers: Record<string, string>;
  body: string | Buffer;
  path?: string;
  method?: string;
}

function httpCase(r: ReturnType<typeof rng>, tokens: { viewer: string; submitter: string }): Case {
  const json = { 'content-type': 'application/json' };
  const auth = (t: string) => ({ authorization: `Bearer ${t}` });
  const anyAuth = (): Record<string, string> => {
    const choice = r.int(6);
    if (choice === 0) return {};
    // the UTF-8 bytes as they are (Node sends a header's characters as bytes 0-255; control characters it refuses to send)
    if (choice === 1) return { authorization: Buffer.from(hostileString(r).slice(0, 8000), 'utf8').toString('latin1').replace(/[\x00-\x08\x0a-\x1f\x7f]/g, '') || 'x' };
    if (choice === 2) return { authorization: `Bearer ${tokens.viewer.slice(0, -1)}${tokens.viewer.endsWith('A') ? 'B' : 'A'}` }; // one character off
    if (choice === 3) return { authorization: `Bearer ${tokens.viewer} ${tokens.viewer}` };
    if (choice === 4) return { authorization: `Basic ${Buffer.from(`x:${tokens.viewer}`).toString('base64')}` };
    return { authorization: `Bearer orch_${Buffer.from(Array.from({ length: 32 }, () => r.int(256))).toString('base64url')}` };
  };
  switch (r.int(9)) {
    case 0: // a fine query with a bad or missing token
      return { headers: { ...json, ...anyAuth() }, body: JSON.stringify({ query: '{ plans { totalCount } tokens { id } }' }) };
    case 1: // random JSON as the body, with a viewer token
      return { headers: { ...json, ...auth(tokens.viewer) }, body: JSON.stringify(randomJson(r)) ?? 'null' };
    case 2: // not JSON at all, or a foreign content type
      return {
        headers: { 'content-type': r.pick(['application/json', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/graphql']), ...auth(tokens.viewer) },
        body: r.pick(['', '{', '{"query":', '\uFEFF{"query":"{ plans { totalCount } }"', 'query=%7B%7D', hostileString(r)]),
      };
    case 3: // deep nesting: JSON, selections, lists in variables
      return {
        headers: { ...json, ...auth(tokens.viewer) },
        body: r.pick([
          deep(5000 + r.int(50_000), '[', ']'),
          JSON.stringify({ query: `{ plans ${deep(200 + r.int(2000), '{ plans ', '}', 'totalCount')} }` }),
          JSON.stringify({ query: 'query($v: [String]) { plans { totalCount } } ', variables: { v: JSON.parse(deep(500, '[', ']', '"x"')) } }),
        ]),
      };
    case 4: // a garbage query text
      return { headers: { ...json, ...auth(tokens.viewer) }, body: JSON.stringify({ query: hostileString(r), variables: randomJson(r), operationName: randomJson(r) }) };
    case 5: // mutations a viewer may not run, with hostile arguments
      return {
        headers: { ...json, ...auth(tokens.viewer) },
        body: JSON.stringify({
          query: r.pick([
            'mutation($id: ID!) { cancelPlan(id: $id) { id } }',
            'mutation($id: ID!) { deletePlan(id: $id) }',
            'mutation($id: ID!) { revokeToken(id: $id) { id } }',
            'mutation($n: String!) { createToken(input: { name: $n, role: ADMIN }) { token } }',
          ]),
          variables: { id: hostileString(r), n: hostileString(r) },
        }),
      };
    case 6: // a submitter's plans, each invalid: a NUL or a lone surrogate somewhere, or wrong types
      return {
        headers: { ...json, ...auth(tokens.submitter) },
        body: JSON.stringify({
          query: 'mutation($input: SubmitPlanInput!) { submitPlan(input: $input) { id } }',
          variables: {
            input: r.pick([
              { name: `p${r.pick(['\0', '\uD800'])}`, tests: [{ name: hostileString(r), type: 'UNIT', script: 'true' }] },
              { name: 'p', tests: [{ name: 't', type: 'UNIT', script: `true${r.pick(['\0', '\uDC00'])}` }] },
              { name: randomJson(r), tests: randomJson(r) },
              { name: 'p', tests: [{ name: 't', type: r.pick(['unit', 'ROOT', '', hostileString(r)]), script: 'true' }] },
              { name: 'p', priority: r.pick(['high', 1e308, -1.5, [1]]), tests: [{ name: 't', type: 'UNIT', script: 'true' }] },
              { name: 'p', tests: [{ name: 't', type: 'UNIT', script: 'true', env: [{ name: '\0', value: 'x' }] }] },
            ]),
          },
        }),
      };
    case 7: // downloads and uploads without a valid token
      return r.pick<Case>([
        { method: 'GET', path: `/artifacts/${pathPart(hostileString(r).slice(0, 200))}`, headers: anyAuth(), body: '' },
        { method: 'GET', path: `/plans/${pathPart(hostileString(r).slice(0, 200))}/artifacts.tar`, headers: anyAuth(), body: '' },
        { method: 'POST', path: '/bundles', headers: { 'content-type': 'application/x-tar', ...anyAuth() }, body: Buffer.alloc(r.int(4096), r.int(256)) },
        { method: 'POST', path: '/bundles', headers: { 'content-type': 'application/x-tar', ...auth(tokens.viewer) }, body: Buffer.alloc(512) },
      ]);
    default: // a huge body
      return { headers: { ...json, ...auth(tokens.viewer) }, body: JSON.stringify({ query: `{ plans { totalCount } }#${'x'.repeat(2 * 1024 * 1024)}` }) };
  }
}

function send(url: string, c: Case): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, method: c.method ?? 'POST', path: c.path ?? '/graphql', headers: c.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (b: Buffer) => chunks.push(b));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    // a server that answers before reading a huge body may close while we write: that is an answer too
    req.on('error', (e: NodeJS.ErrnoException) => (e.code === 'EPIPE' || e.code === 'ECONNRESET' ? resolve({ status: -1, body: e.code }) : reject(e)));
    req.end(c.body);
  });
}

/** An error answer: an HTTP error status, or a GraphQL response whose errors are not empty (and no data of a root field). */
function isError(a: { status: number; body: string }): boolean {
  if (a.status === -1 || a.status >= 400) return true;
  let parsed: any;
  try {
    parsed = JSON.parse(a.body);
  } catch {
    return false;
  }
  const noData = parsed.data === undefined || parsed.data === null || Object.values(parsed.data).every((v) => v === null);
  return Array.isArray(parsed.errors) && parsed.errors.length > 0 && noData;
}

describe(`fuzz: hostile requests with AUTH=on (FUZZ_SEED=${SEED})`, () => {
  let redis: TestRedis;
  let server: TestServer;
  const tokens = { viewer: '', submitter: '', admin: '' };

  before(async () => {
    redis = await startTestRedis();
    server = await startTestServer({
      redisUrl: redis.url,
      env: { AUTH: 'on', RATE_LIMIT_MUTATIONS: '1000000', RATE_LIMIT_UPLOADS: '1000000' },
      beforeServe: async (core) => {
        tokens.viewer = (await core.services.tokens.create('fuzz-viewer', 'VIEWER')).token;
        tokens.submitter = (await core.services.tokens.create('fuzz-submitter', 'SUBMITTER')).token;
        tokens.admin = (await core.services.tokens.create('fuzz-admin', 'ADMIN')).token;
      },
    });
    // something stored before, to see it unchanged after
    const r = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${tokens.submitter}` },
      body: JSON.stringify({ query: 'mutation { submitPlan(input: { name: "kept", tests: [{ name: "a", type: UNIT, script: "true" }] }) { id } }' }),
    });
    assert.equal(r.status, 200);
  });
  after(async () => {
    await server?.stop();
    await redis?.stop();
  });

  const snapshot = async () => {
    const p = server.core.db.prisma;
    return {
      plans: await p.executionPlan.findMany({ select: { id: true, status: true, name: true, submittedBy: true }, orderBy: { id: 'asc' } }),
      tests: await p.testCase.count(),
      tokens: await p.apiToken.findMany({ select: { id: true, name: true, role: true, secretHash: true, revokedAt: true }, orderBy: { id: 'asc' } }),
      bundles: await p.bundle.count(),
    };
  };

  it(`${HTTP_CASES} HTTP requests and ${WS_CASES} graphql-ws connections: each answered with an error, nothing stored, the server up`, async () => {
    const before = await snapshot();
    const r = rng(SEED);
    const failures: string[] = [];
    let next = 0;
    const worker = async () => {
      while (next < HTTP_CASES) {
        const i = next++;
        const c = httpCase(r, tokens);
        const a = await send(server.url, c);
        if (!isError(a)) failures.push(`#${i} ${c.method ?? 'POST'} ${c.path ?? '/graphql'} ${JSON.stringify(c.headers).slice(0, 200)} ${String(c.body).slice(0, 300)} → ${a.status} ${a.body.slice(0, 300)}`);
        if (i % 500 === 0) assert.equal((await fetch(`${server.url}/healthz`)).status, 200, `up after ${i} requests`);
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    assert.deepEqual(failures.slice(0, 10), [], `${failures.length} answers were not errors`);

    // graphql-ws: random init payloads and tokens never get a connection_ack
    const wsFailures: string[] = [];
    for (let i = 0; i < WS_CASES; i++) {
      const payload = r.pick([
        () => undefined,
        () => randomJson(r),
        () => ({ authorization: hostileString(r).slice(0, 5000) }),
        () => ({ authorization: `Bearer orch_${Buffer.from(Array.from({ length: 32 }, () => r.int(256))).toString('base64url')}` }),
        () => ({ Authorization: `Bearer ${tokens.viewer}x` }),
        () => ({ authorization: [`Bearer ${tokens.viewer}`] }),
      ])();
      const answer = await new Promise<string>((resolve) => {
        const ws = new WebSocket(`${server.url.replace('http', 'ws')}/graphql`, 'graphql-transport-ws');
        ws.on('open', () => {
          const init = r.next() < 0.1 ? hostileString(r) : JSON.stringify({ type: 'connection_init', ...(payload === undefined ? {} : { payload }) });
          ws.send(init);
          ws.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: '{ plans { totalCount } }' } }));
        });
        ws.on('message', (m) => resolve(`message ${String(m).slice(0, 200)}`));
        ws.on('close', (code) => resolve(`close ${code}`));
        ws.on('error', (e) => resolve(`error ${e.message}`));
      });
      if (!/^close (4400|4401|4403|4429|1008|1009)$/.test(answer)) wsFailures.push(`#${i} ${JSON.stringify(payload)?.slice(0, 200)} → ${answer}`);
    }
    assert.deepEqual(wsFailures.slice(0, 10), [], `${wsFailures.length} WebSocket answers were not refusals`);

    assert.equal((await fetch(`${server.url}/healthz`)).status, 200);
    const ok = await fetch(`${server.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${tokens.admin}` }, body: '{"query":"{ plans { totalCount } }"}' });
    assert.deepEqual(await ok.json(), { data: { plans: { totalCount: 1 } } }, 'still answering a good request');
    assert.deepEqual(await snapshot(), before, 'stored data unchanged');
  });
});
