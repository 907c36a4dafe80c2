// Issue 11 with real processes: the refusals to start (a non-loopback HOST with AUTH=off, AUTH=on with
// no token), `orchestrator token` on the database, and two `serve` processes on one PostgreSQL server
// and one Redis: the rate limit of a token holds across both (refusing, then letting through once the
// window has passed), and a token revoked through one is refused by the other at once, its open
// subscription there closed with 4401.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { codes, gqlAs, wsAs } from '../helpers/auth';
import { sleep } from '../helpers/gql';
import { runOrchestrator, startOrchestrator, type OrchestratorProcess } from '../helpers/orchestrator-process';
import { startTestPostgres, type TestPostgres } from '../helpers/postgres';
import { startTestRedis, type TestRedis } from '../helpers/redis';

const NOWHERE = '00000000-0000-4000-8000-000000000000';

describe('authentication across processes', () => {
  let pg: TestPostgres;
  let redis: TestRedis;
  let env: Record<string, string>;
  const procs: OrchestratorProcess[] = [];

  before(async () => {
    [pg, redis] = await Promise.all([startTestPostgres(), startTestRedis()]);
    env = { DATABASE_URL: await pg.createDatabase(), REDIS_URL: redis.url, REDIS_PREFIX: `a${randomUUID().slice(0, 8)}`, AUTH: 'on', RATE_LIMIT_MUTATIONS: '4', RATE_LIMIT_WINDOW_MS: '3000' };
  });
  after(async () => {
    for (const p of procs) {
      await p.stop();
      p.cleanup();
    }
    await redis?.stop();
    await pg?.stop();
  });

  it('refuses to start on a non-loopback address with AUTH=off, saying why, before opening anything', async () => {
    for (const host of ['0.0.0.0', '::']) {
      const r = await runOrchestrator('serve', { env: { HOST: host, AUTH: 'off' } });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`refusing to start: HOST=${host.replace(/[.]/g, '\\.')} is not a loopback address and AUTH is off.*Set AUTH=on`));
      assert.equal((await fetch(`http://127.0.0.1:${r.proc.port}/healthz`).catch(() => null))?.status, undefined, 'nothing listens');
      r.proc.cleanup();
    }
  });

  it('refuses to start with AUTH=on while the database holds no usable token', async () => {
    const r = await runOrchestrator('serve', { env, logLevel: 'warn' }, 60_000);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /AUTH=on but the database holds no usable \(unrevoked\) token.*orchestrator token create --name admin --role ADMIN/);
    r.proc.cleanup();
  });

  it('shares rate limits and revocations between two API processes', async () => {
    const created = await runOrchestrator('token', { env, args: ['create', '--name', 'ci', '--role', 'SUBMITTER'] }, 60_000);
    assert.equal(created.code, 0, created.stderr);
    const token = created.stdout.trim();
    assert.match(token, /^orch_[A-Za-z0-9_-]{43}$/);
    assert.match(created.stderr, /created token "ci" \(SUBMITTER/);

    const a = await startOrchestrator('serve', { env });
    procs.push(a);
    const b = await startOrchestrator('serve', { env });
    procs.push(b);

    // 4 mutations per 3 s for this token, counted in Redis: 2 on each process, then both refuse
    const cancel = (p: OrchestratorProcess) => gqlAs(p.url, token, `mutation { cancelPlan(id: "${NOWHERE}") { id } }`);
    for (const p of [a, b, a, b]) assert.deepEqual(codes(await cancel(p)), ['NOT_FOUND'], 'let through (the plan does not exist)');
    let refusedAt = 0;
    for (const p of [a, b]) {
      const r = await cancel(p);
      assert.deepEqual(codes(r), ['RATE_LIMITED'], JSON.stringify(r));
      const retryAfter = r.errors![0].extensions!.retryAfter as number;
      assert.ok(retryAfter >= 1 && retryAfter <= 3, `retryAfter ${retryAfter}`);
      assert.match(r.errors![0].message, /made 4 mutations in 3 s, its limit \(RATE_LIMIT_MUTATIONS\): nothing was done; retry in \d s/);
      refusedAt = Math.max(refusedAt, Date.now() + retryAfter * 1000);
    }
    const queries = await gqlAs(b.url, token, '{ plans { totalCount } }');
    assert.equal(queries.errors, undefined, 'queries are not rate-limited');
    await sleep(Math.max(0, refusedAt - Date.now()) + 200);
    assert.deepEqual(codes(await cancel(b)), ['NOT_FOUND'], 'let through again after retryAfter');

    // revoked through A: B refuses it at once and closes its open subscription
    const admin = (await runOrchestrator('token', { env, args: ['create', '--name', 'root', '--role', 'ADMIN'] }, 60_000)).stdout.trim();
    const ws = wsAs(b.url, `Bearer ${token}`);
    const seen: unknown[] = [];
    ws.client.subscribe({ query: 'subscription { systemStatusUpdated { queuedTests } }' }, { next: (v) => void seen.push(v), error: () => undefined, complete: () => undefined });
    for (let i = 0; i < 100 && !seen.length; i++) await sleep(50);
    assert.ok(seen.length, 'subscribed on B');
    const id = (await gqlAs(b.url, token, '{ viewer { id } }')).data.viewer.id;
    const revoked = await gqlAs(a.url, admin, 'mutation($id: ID!) { revokeToken(id: $id) { revokedAt } }', { id });
    assert.ok(revoked.data?.revokeToken.revokedAt, JSON.stringify(revoked));
    const closed = await Promise.race([ws.closed, sleep(3_000).then(() => null)]);
    assert.equal(closed?.code, 4401, 'B closed the subscription of the revoked token');
    assert.equal((await gqlAs(b.url, token, '{ viewer { id } }')).status, 401, 'B refuses it');

    const listed = await runOrchestrator('token', { env, args: ['list'] }, 60_000);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^ID +NAME +ROLE +CREATED +LAST USED +REVOKED$/m);
    assert.match(listed.stdout, new RegExp(`^${id} +ci +SUBMITTER +\\S+ +\\S+ +20\\d\\d-`, 'm'), listed.stdout);
  });
});
