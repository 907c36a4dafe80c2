// No N+1 queries behind list fields: a page of 100 tests with their environments (and those
// environments' current tests and plans) reads each kind of row in one batch per request, whatever the
// page size. Counted at the repositories, the layer that speaks SQL: every call of every method.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { gqlOk } from '../helpers/gql';
import { startTestRedis, type TestRedis } from '../helpers/redis';
import { startTestServer, type TestServer } from '../helpers/server';

/** Counts the calls of each method of a repository instance (the real one keeps doing the work). */
function countCalls(repo: object): Map<string, number> {
  const calls = new Map<string, number>();
  const proto = Object.getPrototypeOf(repo) as Record<string, unknown>;
  for (const name of Object.getOwnPropertyNames(proto)) {
    const fn = proto[name];
    if (name === 'constructor' || typeof fn !== 'function') continue;
    (repo as Record<string, unknown>)[name] = function (this: unknown, ...args: unknown[]) {
      calls.set(name, (calls.get(name) ?? 0) + 1);
      return (fn as (...a: unknown[]) => unknown).apply(repo, args);
    };
  }
  return calls;
}
const total = (calls: Map<string, number>) => [...calls.values()].reduce((a, b) => a + b, 0);

describe('list fields are batched per request', () => {
  let redis: TestRedis;
  let server: TestServer;
  let planId: string;
  const N = 100;

  before(async () => {
    redis = await startTestRedis();
    server = await startTestServer({ redisUrl: redis.url });
    const tests = Array.from({ length: N }, (_, i) => ({ name: `t${i}`, type: 'UNIT', script: 'true' }));
    planId = (await gqlOk(server.url, `mutation($input: SubmitPlanInput!) { submitPlan(input: $input) { id } }`, { input: { name: 'batching', tests } })).submitPlan.id;
    // each test on its own environment, which runs it (rows as a worker would write them)
    const prisma = server.core.db.prisma;
    const rows = await prisma.testCase.findMany({ where: { planId }, select: { id: true, pool: true } });
    await prisma.worker.create({ data: { id: 'w-batching', host: 'h', pid: 1, pools: [] } });
    for (const t of rows) {
      const envId = randomUUID();
      await prisma.environment.create({
        data: { id: envId, pool: t.pool, kind: 'CONTAINER', status: 'BUSY', host: 'h', workerId: 'w-batching', arch: 'x86_64', cpus: 1, memoryMb: 64, image: 'i', tags: [], currentTestId: t.id },
      });
      await prisma.testCase.update({ where: { id: t.id }, data: { environmentId: envId } });
    }
  });
  after(async () => {
    await server?.stop();
    await redis?.stop();
  });

  it('reads a page of 100 tests with their environments, plans and current tests in one call per repository method', async () => {
    const { tests, plans, status } = server.core.deps;
    const [testCalls, planCalls, statusCalls] = [countCalls(tests), countCalls(plans), countCalls(status)];
    const data = await gqlOk(
      server.url,
      `query($id: ID!) { plan(id: $id) { tests(first: 100) { nodes { id plan { id } environment { id status currentTest { id } } } } } }`,
      { id: planId },
    );
    const nodes = data.plan.tests.nodes as { id: string; plan: { id: string }; environment: { id: string; currentTest: { id: string } } }[];
    assert.equal(nodes.length, N);
    for (const n of nodes) {
      assert.equal(n.plan.id, planId);
      assert.equal(n.environment.currentTest.id, n.id, 'each environment runs its test');
    }
    // plan(id) + the page; then one batch of environments, one of their current tests, one of plans
    assert.deepEqual(Object.fromEntries(statusCalls), { environmentsByIds: 1 });
    assert.deepEqual(Object.fromEntries(testCalls), { listByPlan: 1, countOfPlan: 1, byIds: 1 });
    assert.deepEqual(Object.fromEntries(planCalls), { get: 1, counts: 1, byIds: 1 });
  });

  it('reads the environments list with its current tests in one query for the tests', async () => {
    const { tests, status } = server.core.deps;
    const [testCalls, statusCalls] = [countCalls(tests), countCalls(status)];
    const data = await gqlOk(server.url, `{ environments { id currentTest { id name } } }`);
    assert.equal((data.environments as { currentTest: unknown }[]).filter((e) => e.currentTest).length, N);
    assert.equal(total(statusCalls), 1, JSON.stringify(Object.fromEntries(statusCalls)));
    assert.deepEqual(Object.fromEntries(testCalls), { byIds: 1 });
  });
});
