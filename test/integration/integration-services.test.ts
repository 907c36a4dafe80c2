// INTEGRATION tests with real services, as a team writes them: a Redis and a PostgreSQL server started
// inside the test's sandbox from the default services image (debian-bookworm-services, built by
// `npm run images`), used by the script; and a service that never gets ready, which fails the test
// naming it without running the script.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestRedis, type TestRedis } from '../helpers/redis';
import { submitTests, testsByName, waitForPlan } from '../helpers/plans';
import { startTestServer, type TestServer } from '../helpers/server';

const PLAN = `query($id: ID!) { plan(id: $id) { status tests(first: 10) { nodes { name status environment { pool }
  result { exitCode stdout stderr errorMessage } } } } }`;
// The default pools: INTEGRATION tests go to the pool whose default image is the services image.
const POOLS = JSON.stringify([
  { name: 'integration', kind: 'CONTAINER', cpus: 1, memoryMb: 1024, image: 'debian-bookworm-services', capacity: 2, pids: 512, testTypes: ['INTEGRATION'] },
]);

const REDIS = { name: 'redis', command: 'exec redis-server --port 6390 --save "" --appendonly no --dir /tmp', readyCheck: 'redis-cli -p 6390 ping | grep -q PONG' };
const POSTGRES = {
  name: 'postgres',
  // as the sandbox user (no root here): its own cluster in /tmp, a socket in /tmp, no TCP
  command: 'initdb -D /tmp/pg -U postgres --auth=trust >/tmp/initdb.log 2>&1 && exec postgres -D /tmp/pg -k /tmp -c listen_addresses=""',
  readyCheck: 'pg_isready -h /tmp -U postgres',
};

describe('INTEGRATION tests with real services from the services image', () => {
  let redis: TestRedis;
  let server: TestServer;
  before(async () => {
    redis = await startTestRedis();
    server = await startTestServer({ redisUrl: redis.url, worker: true, env: { POOLS } });
  });
  after(async () => {
    await server?.stop();
    await redis?.stop();
  });

  async function run(tests: object[]) {
    const id = await submitTests(server.url, tests, {}, 'svc');
    const done = (p: any) => ['PASSED', 'FAILED', 'CANCELLED'].includes(p.status);
    return testsByName(await waitForPlan(server.url, PLAN, id, { timeoutMs: 120_000, everyMs: 200, done }));
  }

  it('starts Redis and PostgreSQL beside the script, which uses both', async () => {
    const t = await run([
      {
        name: 'both',
        type: 'INTEGRATION',
        timeoutSeconds: 90,
        services: [REDIS, POSTGRES],
        script: [
          'set -e',
          'redis-cli -p 6390 set greeting hello >/dev/null',
          'echo "redis: $(redis-cli -p 6390 get greeting)"',
          'psql -h /tmp -U postgres -tA -c "create table t (n int); insert into t values (40), (2);" >/dev/null',
          'echo "postgres: $(psql -h /tmp -U postgres -tA -c "select sum(n) from t")"',
          'python3 -c "print(\'python3:\', 6 * 7)"',
          'git --version >/dev/null && curl --version >/dev/null && jq --version >/dev/null && echo tools: ok',
        ].join('\n'),
      },
    ]);
    const both = t.both;
    assert.equal(both.status, 'PASSED', JSON.stringify(both.result));
    assert.equal(both.environment.pool, 'integration');
    assert.equal(both.result.stdout, 'redis: hello\npostgres: 42\npython3: 42\ntools: ok\n');
  });

  it('fails a test whose service never gets ready, naming the service, without running the script', async () => {
    const t = await run([
      {
        name: 'never',
        type: 'INTEGRATION',
        timeoutSeconds: 4,
        services: [{ name: 'stuck-db', command: 'exec sleep 3600', readyCheck: 'pg_isready -h /tmp -U postgres' }],
        script: 'echo the script ran',
      },
    ]);
    assert.equal(t.never.status, 'FAILED');
    assert.match(t.never.result.errorMessage ?? '', /^service "stuck-db" not ready within \d+ ms \(readyCheck: pg_isready -h \/tmp -U postgres\): the script was not run$/, JSON.stringify(t.never.result));
    assert.doesNotMatch(t.never.result.stdout, /the script ran/);
  });
});
