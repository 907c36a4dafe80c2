// Output is bytes: binary output survives (safe text in the row, the exact bytes as an artifact, live
// chunks), and a result that cannot be recorded ends its test in ERROR naming the cause, run once.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Client } from 'graphql-ws';
import { gqlOk, sleep, subscribe, wsClient } from '../helpers/gql';
import { startTestRedis, type TestRedis } from '../helpers/redis';
import { submitTests, waitForPlan } from '../helpers/plans';
import { startTestServer, type TestServer } from '../helpers/server';

const PLAN = `query($id: ID!) { plan(id: $id) { id status counts { running queued total }
  tests(first: 10) { nodes { id name status attempts
    result { exitCode stdout stderr outputTruncated errorMessage artifacts { name kind sizeBytes sha256 url } } } } } }`;
const POOLS = JSON.stringify([
  { name: 'container', kind: 'CONTAINER', cpus: 1, memoryMb: 256, image: 'debian-bookworm', capacity: 2, pids: 64, testTypes: ['UNIT'] },
]);

describe('test output is bytes', () => {
  let redis: TestRedis;
  let server: TestServer;
  let url: string;
  let ws: Client;

  before(async () => {
    redis = await startTestRedis();
    server = await startTestServer({ redisUrl: redis.url, worker: true, env: { POOLS, RECONCILE_INTERVAL_MS: '500' } });
    url = server.url;
    ws = wsClient(url);
  });
  after(async () => {
    await ws?.dispose();
    await server?.stop();
    await redis?.stop();
  });

  const submit = (tests: object[]) => submitTests(url, tests, {}, 'bytes');
  const waitPlan = (id: string) => waitForPlan(url, PLAN, id, { everyMs: 200 });
  const download = async (path: string) => {
    const res = await fetch(`${url}${path}`);
    assert.equal(res.status, 200);
    return Buffer.from(await res.arrayBuffer());
  };

  it('keeps binary output: PASSED, safe text in the row, the exact bytes as stdout.log, live chunks too', async () => {
    const exact = Buffer.from([0x61, 0x00, 0x62, 0xff, 0x63]); // a NUL b <invalid UTF-8> c
    const errBytes = Buffer.from('é\0\n'); // stderr: valid UTF-8 but a NUL
    const planId = await submit([
      { name: 'binary', type: 'UNIT', script: `sleep 1.5; printf 'a\\000b\\377c'; printf '\\303\\251\\000\\n' >&2; sleep 0.5` },
      { name: 'text', type: 'UNIT', script: `printf 'plain é\\n'` },
    ]);
    let running: any = null;
    for (let i = 0; i < 300 && !running; i++) {
      running = (await gqlOk(url, PLAN, { id: planId })).plan.tests.nodes.find((t: any) => t.name === 'binary' && t.status === 'RUNNING') ?? null;
      if (!running) await sleep(50);
    }
    assert.ok(running, 'binary reached RUNNING');
    const live = subscribe<any>(ws, `subscription($id: ID!) { testOutput(testId: $id) { stream data offset } }`, { id: running.id });

    const plan = await waitPlan(planId);
    const t = Object.fromEntries(plan.tests.nodes.map((n: any) => [n.name, n]));
    const b = t.binary;
    assert.equal(b.status, 'PASSED', JSON.stringify(b));
    assert.equal(b.attempts, 1);
    assert.equal(b.result.exitCode, 0);
    assert.equal(b.result.outputTruncated, false);
    assert.ok(!b.result.stdout.includes('\0') && !b.result.stderr.includes('\0'), 'no NUL in the row');
    assert.ok(b.result.stdout.startsWith('a\uFFFDb\uFFFDc\n'), JSON.stringify(b.result.stdout));
    assert.match(b.result.stdout, /not valid text: NUL bytes and invalid UTF-8 are shown as U\+FFFD; the exact bytes are the artifact stdout\.log/);
    assert.ok(b.result.stderr.startsWith('é\uFFFD\n'), JSON.stringify(b.result.stderr));

    const logs = Object.fromEntries(b.result.artifacts.map((a: any) => [a.name, a]));
    assert.deepEqual(Object.keys(logs).sort(), ['stderr.log', 'stdout.log']);
    for (const [name, want] of [['stdout.log', exact], ['stderr.log', errBytes]] as const) {
      const a = logs[name];
      assert.equal(a.kind, 'LOG');
      assert.equal(a.sizeBytes, want.length);
      const got = await download(a.url);
      assert.deepEqual(got, want, `${name} holds exactly the bytes written`);
      assert.equal(a.sha256, createHash('sha256').update(want).digest('hex'));
    }

    // valid text is kept as it is; the logs hold it too (an empty stream, an empty log)
    assert.equal(t.text.status, 'PASSED');
    assert.equal(t.text.result.stdout, 'plain é\n');
    const textLogs = Object.fromEntries(t.text.result.artifacts.map((a: any) => [a.name, a]));
    assert.deepEqual(Object.keys(textLogs).sort(), ['stderr.log', 'stdout.log']);
    assert.equal((await download(textLogs['stdout.log'].url)).toString(), 'plain é\n');
    assert.equal(textLogs['stderr.log'].sizeBytes, 0);
    assert.deepEqual(await download(textLogs['stderr.log'].url), Buffer.alloc(0));

    // the live chunks carry the same safe text, at byte offsets
    const chunk = await live.next((c) => c.stream === 'stdout', 10_000);
    assert.deepEqual([chunk.data, chunk.offset], ['a\uFFFDb\uFFFDc', 0]);
    live.close();
  });

  it('a result that cannot be recorded ends the test in ERROR with its cause, run once (not a lost job)', async () => {
    // An honest database refusal: a constraint the result row breaks (as a NUL in text once did).
    await server.core.db.prisma.$executeRawUnsafe(
      `ALTER TABLE "test_run" ADD CONSTRAINT "refuses_marked_output" CHECK (position('refuse-to-record' in "stdout") = 0)`,
    );
    try {
      const planId = await submit([
        { name: 'unrecordable', type: 'UNIT', script: 'echo refuse-to-record' },
        { name: 'fine', type: 'UNIT', script: 'echo recorded' },
      ]);
      const plan = await waitPlan(planId);
      const t = Object.fromEntries(plan.tests.nodes.map((n: any) => [n.name, n]));
      assert.equal(t.fine.status, 'PASSED');
      assert.equal(t.fine.result.stdout, 'recorded\n');
      const u = t.unrecordable;
      assert.equal(u.status, 'ERROR', JSON.stringify(u));
      assert.equal(u.attempts, 1, 'not run again');
      assert.match(u.result.errorMessage, /^the result could not be recorded: .*refuses_marked_output/, u.result.errorMessage);
      assert.doesNotMatch(u.result.errorMessage, /lost|Redis/);
      // and it stays so: the reconciler (every 0.5 s here) does not take it for a lost job
      await sleep(2_000);
      const again = (await gqlOk(url, PLAN, { id: planId })).plan.tests.nodes.find((n: any) => n.name === 'unrecordable');
      assert.deepEqual([again.status, again.attempts], ['ERROR', 1]);
    } finally {
      await server.core.db.prisma.$executeRawUnsafe(`ALTER TABLE "test_run" DROP CONSTRAINT "refuses_marked_output"`);
    }
  });
});
