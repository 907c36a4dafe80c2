// Issue 11: tokens and roles over HTTP and graphql-ws, against a real API (PGlite, Redis) with AUTH=on.
// Each role is let through where it may and refused where it may not; another submitter's plan is
// refused; a revoked token stops at once, its open subscription closed with 4401; the per-token limits
// refuse with when to retry and store nothing.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { codes, gqlAs, wsAs, wsRun } from '../helpers/auth';
import { sleep } from '../helpers/gql';
import { startTestRedis, type TestRedis } from '../helpers/redis';
import { startTestServer, type TestServer } from '../helpers/server';

const SUBMIT = `mutation($input: SubmitPlanInput!) { submitPlan(input: $input) { id submittedBy counts { total } } }`;
const plan = (name: string, n = 1) => ({ name, tests: Array.from({ length: n }, (_, i) => ({ name: `t${i}`, type: 'UNIT', script: 'true' })) });
const NOWHERE = '00000000-0000-4000-8000-000000000000';

describe('authentication and roles (AUTH=on)', () => {
  let redis: TestRedis;
  let server: TestServer;
  let url: string;
  const t: Record<'viewer' | 'submitter' | 'other' | 'admin', string> = { viewer: '', submitter: '', other: '', admin: '' };

  before(async () => {
    redis = await startTestRedis();
    server = await startTestServer({
      redisUrl: redis.url,
      env: { AUTH: 'on', MAX_QUEUED_TESTS_PER_TOKEN: '5', MAX_SUBSCRIPTIONS_PER_TOKEN: '3', RATE_LIMIT_MUTATIONS: '1000', RATE_LIMIT_UPLOADS: '3', RATE_LIMIT_WINDOW_MS: '60000', TOKEN_RECHECK_MS: '300' },
      beforeServe: async (core) => {
        for (const [k, role] of [['viewer', 'VIEWER'], ['submitter', 'SUBMITTER'], ['other', 'SUBMITTER'], ['admin', 'ADMIN']] as const) {
          t[k] = (await core.services.tokens.create(`${k}-${randomUUID().slice(0, 6)}`, role)).token;
        }
      },
    });
    url = server.url;
  });
  after(async () => {
    await server?.stop();
    await redis?.stop();
  });

  it('answers 401 UNAUTHENTICATED without a token, with a malformed one and with an unknown one; /healthz and the pages stay open', async () => {
    for (const token of [null, 'nope', `orch_${'A'.repeat(43)}`]) {
      const r = await gqlAs(url, token, '{ plans { totalCount } }');
      assert.equal(r.status, 401, String(token));
      assert.deepEqual(codes(r), ['UNAUTHENTICATED'], JSON.stringify(r));
      assert.equal(r.data, undefined);
    }
    const basic = await fetch(`${url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Basic YTpi' }, body: '{"query":"{ plans { totalCount } }"}' });
    assert.equal(basic.status, 401);
    assert.equal((await fetch(`${url}/healthz`)).status, 200);
    const page = await fetch(`${url}/`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<meta name="orchestrator-auth" content="on">/);
  });

  it('401 on artifacts, a plan\'s tar and bundles without a token; 403 on bundles for a viewer; through with one', async () => {
    for (const path of [`/artifacts/${NOWHERE}`, `/plans/${NOWHERE}/artifacts.tar`]) {
      const none = await fetch(`${url}${path}`);
      assert.equal(none.status, 401, path);
      assert.match(((await none.json()) as { error: string }).error, /Authorization: Bearer/);
      assert.equal((await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${t.viewer}` } })).status, 404, `${path} with a viewer token: past the gate`);
    }
    const upload = (token: string | null) =>
      fetch(`${url}/bundles`, { method: 'POST', headers: { 'content-type': 'application/x-tar', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: Buffer.alloc(1024, 7) });
    const none = await upload(null);
    assert.equal(none.status, 401);
    const viewer = await upload(t.viewer);
    assert.equal(viewer.status, 403);
    assert.match(((await viewer.json()) as { error: string }).error, /has role VIEWER; uploading a bundle needs SUBMITTER or ADMIN/);
    assert.equal((await upload(t.submitter)).status, 400, 'a submitter reaches the unpacker, which refuses 1 KiB of 0x07');
    // GET /bundles/:id: a token of any role, and not an upload (no upload limit spent)
    const shown = `/bundles/sha256:${'0'.repeat(64)}`;
    assert.equal((await fetch(`${url}${shown}`)).status, 401);
    assert.equal((await fetch(`${url}${shown}`, { headers: { authorization: `Bearer ${t.viewer}` } })).status, 404, 'a viewer may look a bundle up');
  });

  it('refuses an upload past RATE_LIMIT_UPLOADS with 429 and Retry-After, storing nothing', async () => {
    // the submitter made one upload above: two more are let through (to the unpacker, which refuses them), then 429
    const upload = () => fetch(`${url}/bundles`, { method: 'POST', headers: { 'content-type': 'application/x-tar', authorization: `Bearer ${t.submitter}` }, body: Buffer.alloc(1024, 7) });
    assert.equal((await upload()).status, 400);
    assert.equal((await upload()).status, 400);
    const refused = await upload();
    assert.equal(refused.status, 429);
    const retryAfter = Number(refused.headers.get('retry-after'));
    assert.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`);
    const body = (await refused.json()) as { error: string; retryAfter: number };
    assert.match(body.error, /made 3 bundle uploads in 60 s, its limit \(RATE_LIMIT_UPLOADS\): nothing was done; retry in \d+ s/);
    assert.equal(body.retryAfter, retryAfter);
    assert.equal(await server.core.db.prisma.bundle.count(), 0);
  });

  it('a viewer queries and subscribes, but every mutation is FORBIDDEN and stores nothing', async () => {
    const before = await server.core.db.prisma.executionPlan.count();
    const q = await gqlAs(url, t.viewer, '{ viewer { name role lastUsedAt } plans { totalCount } }');
    assert.equal(q.errors, undefined, JSON.stringify(q.errors));
    assert.equal(q.data.viewer.role, 'VIEWER');
    for (const [query, vars] of [
      [SUBMIT, { input: plan('v') }],
      [`mutation { cancelPlan(id: "${NOWHERE}") { id } }`, {}],
      [`mutation { deletePlan(id: "${NOWHERE}") }`, {}],
      [`mutation { cancelTest(id: "${NOWHERE}") { id } }`, {}],
      [`mutation { createToken(input: { name: "x", role: ADMIN }) { token } }`, {}],
      [`mutation { revokeToken(id: "${NOWHERE}") { id } }`, {}],
    ] as const) {
      const r = await gqlAs(url, t.viewer, query, vars);
      assert.deepEqual(codes(r), ['FORBIDDEN'], `${query}: ${JSON.stringify(r.errors)}`);
    }
    assert.deepEqual(codes(await gqlAs(url, t.viewer, '{ tokens { id } }')), ['FORBIDDEN']);
    assert.deepEqual(codes(await gqlAs(url, t.submitter, '{ tokens { id } }')), ['FORBIDDEN']);
    assert.equal(await server.core.db.prisma.executionPlan.count(), before, 'nothing stored');

    const ws = wsAs(url, `Bearer ${t.viewer}`);
    const r = await wsRun(ws.client, '{ viewer { role } }');
    assert.deepEqual(r.data, { viewer: { role: 'VIEWER' } });
    const m = await wsRun(ws.client, SUBMIT, { input: plan('over ws') });
    assert.deepEqual(m.errors?.map((e) => e.extensions?.code), ['FORBIDDEN'], JSON.stringify(m));
    await ws.client.dispose();
  });

  it('a submitter submits (submittedBy is its name) and cancels its own plan; another submitter\'s plan is FORBIDDEN; an admin may', async () => {
    const own = await gqlAs(url, t.submitter, SUBMIT, { input: plan('own') });
    assert.equal(own.errors, undefined, JSON.stringify(own.errors));
    const viewerName = (await gqlAs(url, t.submitter, '{ viewer { name } }')).data.viewer.name;
    assert.equal(own.data.submitPlan.submittedBy, viewerName);
    const id = own.data.submitPlan.id;
    const test = (await gqlAs(url, t.submitter, `{ plan(id: "${id}") { tests { nodes { id } } } }`)).data.plan.tests.nodes[0].id;

    for (const query of [`mutation { cancelPlan(id: "${id}") { id } }`, `mutation { cancelTest(id: "${test}") { id } }`, `mutation { deletePlan(id: "${id}") }`]) {
      const r = await gqlAs(url, t.other, query);
      assert.deepEqual(codes(r), ['FORBIDDEN'], JSON.stringify(r));
      assert.match(r.errors![0].message, /submitted by another token/);
    }
    assert.equal((await gqlAs(url, t.other, `{ plan(id: "${id}") { status } }`)).data.plan.status, 'QUEUED', 'unchanged by the refusals');
    const cancelled = await gqlAs(url, t.submitter, `mutation { cancelPlan(id: "${id}") { status } }`);
    assert.equal(cancelled.data.cancelPlan.status, 'CANCELLED', JSON.stringify(cancelled.errors));

    const another = (await gqlAs(url, t.other, SUBMIT, { input: plan('theirs') })).data.submitPlan.id;
    const byAdmin = await gqlAs(url, t.admin, `mutation { cancelPlan(id: "${another}") { status } }`);
    assert.equal(byAdmin.data.cancelPlan.status, 'CANCELLED', JSON.stringify(byAdmin.errors));
    assert.equal((await gqlAs(url, t.admin, `mutation { deletePlan(id: "${another}") }`)).data.deletePlan, true);
  });

  it('an admin makes, lists and revokes tokens; the secret is shown once; a revoked token is refused at once and its open subscription closed with 4401', async () => {
    const made = await gqlAs(url, t.admin, `mutation { createToken(input: { name: "ci-${randomUUID().slice(0, 6)}", role: VIEWER }) { token apiToken { id name role revokedAt } } }`);
    assert.equal(made.errors, undefined, JSON.stringify(made.errors));
    const { token, apiToken } = made.data.createToken;
    assert.match(token, /^orch_[A-Za-z0-9_-]{43}$/);
    const listed = (await gqlAs(url, t.admin, '{ tokens { id name role } }')).data.tokens;
    assert.ok(listed.some((x: any) => x.id === apiToken.id));
    assert.ok(!JSON.stringify(listed).includes(token), 'the secret is never listed');
    const row = await server.core.db.prisma.apiToken.findUniqueOrThrow({ where: { id: apiToken.id } });
    assert.notEqual(row.secretHash, token);
    assert.ok(!row.secretHash.includes(token.slice(5)), 'only a hash is stored');

    const ws = wsAs(url, `Bearer ${token}`);
    const seen: unknown[] = [];
    let ended: unknown = null;
    ws.client.subscribe({ query: 'subscription { systemStatusUpdated { queuedTests } }' }, { next: (v) => void seen.push(v), error: (e) => (ended = e), complete: () => undefined });
    for (let i = 0; i < 100 && !seen.length; i++) await sleep(50);
    assert.ok(seen.length, 'the subscription runs');
    assert.equal((await gqlAs(url, token, '{ viewer { name } }')).status, 200);

    const revoked = await gqlAs(url, t.admin, `mutation($id: ID!) { revokeToken(id: $id) { id revokedAt } }`, { id: apiToken.id });
    assert.ok(revoked.data.revokeToken.revokedAt, JSON.stringify(revoked));
    const after = await gqlAs(url, token, '{ viewer { name } }');
    assert.equal(after.status, 401, 'refused at once');
    assert.deepEqual(codes(after), ['UNAUTHENTICATED']);
    const closed = await Promise.race([ws.closed, sleep(5_000).then(() => null)]);
    assert.equal(closed?.code, 4401, `the open subscription was closed with 4401: ${JSON.stringify(closed)} ${JSON.stringify(ended)}`);
    const again = wsAs(url, `Bearer ${token}`);
    assert.equal((await wsRun(again.client, '{ viewer { name } }')).closed?.code, 4401, 'a new connection with it is refused');
  });

  it('graphql-ws: no payload, a bad token or a non-Bearer value closes with 4401', async () => {
    for (const auth of [null, `Bearer orch_${'x'.repeat(43)}`, t.viewer, 'Bearer ']) {
      const ws = wsAs(url, auth);
      const r = await wsRun(ws.client, '{ viewer { name } }');
      assert.equal(r.closed?.code, 4401, `${auth}: ${JSON.stringify(r)}`);
    }
  });

  it('refuses a plan past MAX_QUEUED_TESTS_PER_TOKEN with RATE_LIMITED and retryAfter, storing nothing', async () => {
    const r1 = await gqlAs(url, t.other, SUBMIT, { input: plan('four', 4) });
    assert.equal(r1.errors, undefined, JSON.stringify(r1.errors));
    const before = await server.core.db.prisma.testCase.count();
    const r2 = await gqlAs(url, t.other, SUBMIT, { input: plan('two more', 2) });
    assert.deepEqual(codes(r2), ['RATE_LIMITED'], JSON.stringify(r2));
    assert.match(r2.errors![0].message, /4 tests queued; 2 more would pass its limit of 5 \(MAX_QUEUED_TESTS_PER_TOKEN\)/);
    assert.equal(typeof r2.errors![0].extensions?.retryAfter, 'number');
    assert.equal(await server.core.db.prisma.testCase.count(), before, 'nothing stored');
    assert.equal((await gqlAs(url, t.submitter, SUBMIT, { input: plan('another token', 2) })).errors, undefined, 'the cap is per token');
    await gqlAs(url, t.other, `mutation { cancelPlan(id: "${r1.data.submitPlan.id}") { id } }`);
    assert.equal((await gqlAs(url, t.other, SUBMIT, { input: plan('after cancelling', 2) })).errors, undefined, 'room again once its tests left the queue');
  });

  it('refuses a subscription past MAX_SUBSCRIPTIONS_PER_TOKEN, across connections of the token', async () => {
    const a = wsAs(url, `Bearer ${t.viewer}`);
    const b = wsAs(url, `Bearer ${t.viewer}`);
    const results: { errors?: any[] }[] = [];
    const sub = (c: typeof a) =>
      c.client.subscribe({ query: 'subscription { planUpdated { id } }' }, { next: (v) => void results.push(v as never), error: (e) => void results.push({ errors: Array.isArray(e) ? e : [e] }), complete: () => undefined });
    sub(a);
    sub(a);
    sub(b);
    await sleep(500);
    assert.equal(results.length, 0, JSON.stringify(results));
    sub(b);
    for (let i = 0; i < 100 && !results.length; i++) await sleep(50);
    assert.equal(results[0]?.errors?.[0]?.extensions?.code, 'RATE_LIMITED', JSON.stringify(results));
    assert.match(results[0].errors![0].message, /already runs 3 subscriptions .*MAX_SUBSCRIPTIONS_PER_TOKEN/);
    await a.client.dispose();
    await b.client.dispose();
  });

  it('keeps lastUsedAt without a write per request, and writes it within TOKEN_RECHECK_MS', async () => {
    const name = `seen-${randomUUID().slice(0, 6)}`;
    const { token, apiToken } = await server.core.services.tokens.create(name, 'VIEWER');
    assert.equal((await server.core.db.prisma.apiToken.findUniqueOrThrow({ where: { id: apiToken.id } })).lastUsedAt, null);
    await gqlAs(url, token, '{ plans { totalCount } }');
    const shown = (await gqlAs(url, token, '{ viewer { lastUsedAt } }')).data.viewer.lastUsedAt;
    assert.ok(shown, 'shown at once from memory');
    let stored: Date | null = null;
    for (let i = 0; i < 50 && !stored; i++) {
      await sleep(100);
      stored = (await server.core.db.prisma.apiToken.findUniqueOrThrow({ where: { id: apiToken.id } })).lastUsedAt;
    }
    assert.ok(stored, 'written by the periodic flush');
  });
});
