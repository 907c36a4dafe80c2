// The complete logs of a test as users download them: stdout, stderr and service logs as LOG artifacts,
// byte-exact, cut with a marker past MAX_LOG_BYTES; downloads with their headers and Range; a plan's
// artifacts in one tar. Real server, worker and sandboxes.
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gql, gqlOk, sleep } from '../helpers/gql';
import { startTestRedis, type TestRedis } from '../helpers/redis';
import { startTestServer, type TestServer } from '../helpers/server';
import { parseTar } from '../helpers/tar';

const SUBMIT = `mutation($input: SubmitPlanInput!) { submitPlan(input: $input) { id } }`;
const PLAN = `query($id: ID!) { plan(id: $id) { id status counts { running queued total }
  tests(first: 20) { nodes { id name status attempts
    result { exitCode stdout stderr outputTruncated errorMessage artifacts { id name kind sizeBytes sha256 url } } } } } }`;
const POOLS = JSON.stringify([
  { name: 'container', kind: 'CONTAINER', cpus: 1, memoryMb: 256, image: 'debian-bookworm', capacity: 2, pids: 64, testTypes: ['UNIT', 'INTEGRATION'] },
]);
const LOG_LIMIT = 65536;

describe('complete logs and downloads', () => {
  let redis: TestRedis;
  let server: TestServer;
  let url: string;
  let artifactDir: string;

  before(async () => {
    redis = await startTestRedis();
    artifactDir = mkdtempSync(join(tmpdir(), 'orch-artifacts-'));
    server = await startTestServer({
      redisUrl: redis.url,
      worker: true,
      env: { POOLS, MAX_OUTPUT_BYTES: '4096', MAX_LOG_BYTES: String(LOG_LIMIT), ARTIFACT_DIR: artifactDir },
    });
    url = server.url;
  });
  after(async () => {
    await server?.stop();
    await redis?.stop();
    rmSync(artifactDir, { recursive: true, force: true });
  });

  async function runPlan(tests: object[]) {
    const id = (await gqlOk(url, SUBMIT, { input: { name: `logs-${randomUUID().slice(0, 6)}`, tests } })).submitPlan.id;
    const deadline = Date.now() + 90_000;
    for (;;) {
      const { plan } = await gqlOk(url, PLAN, { id });
      if (['PASSED', 'FAILED', 'CANCELLED'].includes(plan.status) && plan.counts.running === 0 && plan.counts.queued === 0) {
        return { id, plan, t: Object.fromEntries(plan.tests.nodes.map((n: any) => [n.name, n])) as Record<string, any> };
      }
      if (Date.now() > deadline) throw new Error(`plan not finished: ${JSON.stringify(plan)}`);
      await sleep(200);
    }
  }
  const artifactsOf = (test: any) => Object.fromEntries(test.result.artifacts.map((a: any) => [a.name, a])) as Record<string, any>;
  const get = async (path: string, headers: Record<string, string> = {}, method = 'GET') => {
    const res = await fetch(`${url}${path}`, { headers, method });
    return { res, body: Buffer.from(await res.arrayBuffer()) };
  };

  // what the test writes: NUL, invalid UTF-8, more than MAX_OUTPUT_BYTES (the row keeps 4096)
  const STDOUT = Buffer.concat([Buffer.from('out\0\xff é\n', 'latin1'), Buffer.alloc(10_000, 'o')]);
  const STDERR = Buffer.from([0x65, 0x72, 0x72, 0x00, 0xfe]);
  const SERVICE = Buffer.from([0x73, 0x76, 0x63, 0x00, 0xff, 0x0a]);
  let logsPlan: Awaited<ReturnType<typeof runPlan>>;

  before(async () => {
    logsPlan = await runPlan([
      {
        name: 'with-logs',
        type: 'INTEGRATION',
        services: [{ name: 'svc-a', command: `printf 'svc\\000\\377\\n'; exec sleep 600`, readyCheck: 'true' }],
        artifactPaths: ['*.txt', '*.bin', '*.html'],
        script: [
          `printf 'out\\000\\377 \\351\\n'; head -c 10000 /dev/zero | tr '\\000' o`,
          `printf 'err\\000\\376' >&2`,
          `printf x > 'résumé "q".txt'; printf y > data.bin; printf '<script>1</script>' > page.html`,
        ].join('\n'),
      },
      { name: 'dir/with slash', type: 'UNIT', artifactPaths: ['out'], script: 'mkdir -p out/sub; echo nested > out/sub/n.txt; echo second' },
    ]);
  });

  it('stores stdout, stderr and each service log as LOG artifacts, byte-exact (NUL, invalid UTF-8), beyond what the result row keeps', async () => {
    const t = logsPlan.t['with-logs'];
    assert.equal(t.status, 'PASSED', JSON.stringify(t.result));
    assert.equal(t.result.outputTruncated, true, 'the row keeps MAX_OUTPUT_BYTES');
    assert.ok(t.result.stdout.length < 5000);
    const a = artifactsOf(t);
    for (const [name, want] of [['stdout.log', STDOUT], ['stderr.log', STDERR], ['service-svc-a.log', SERVICE]] as const) {
      assert.ok(a[name], `${name} in ${Object.keys(a)}`);
      assert.equal(a[name].kind, 'LOG');
      assert.equal(a[name].sizeBytes, want.length, name);
      assert.equal(a[name].sha256, createHash('sha256').update(want).digest('hex'), name);
      const { res, body } = await get(a[name].url);
      assert.equal(res.status, 200);
      assert.deepEqual(body, want, `${name} holds exactly what was written`);
      assert.equal(res.headers.get('content-type'), 'text/plain; charset=utf-8');
      assert.equal(res.headers.get('content-length'), String(want.length));
      assert.equal(res.headers.get('content-disposition'), `attachment; filename="${name}"; filename*=UTF-8''${name}`);
      assert.equal(res.headers.get('accept-ranges'), 'bytes');
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    }
    // the blobs are in ARTIFACT_DIR, by content
    assert.ok(existsSync(join(artifactDir, a['stdout.log'].sha256.slice(0, 2), a['stdout.log'].sha256)));
  });

  it('cuts a log past MAX_LOG_BYTES with a marker line saying how many bytes were dropped', async () => {
    const { t } = await runPlan([{ name: 'loud', type: 'UNIT', script: `head -c 100000 /dev/zero | tr '\\000' a; echo tail-line >&2` }]);
    assert.equal(t.loud.status, 'PASSED', JSON.stringify(t.loud.result));
    const a = artifactsOf(t.loud);
    const { body } = await get(a['stdout.log'].url);
    const marker = `\n[test-orchestrator: log cut at the log limit of ${LOG_LIMIT} bytes (MAX_LOG_BYTES): ${100_000 - LOG_LIMIT} more bytes were dropped]\n`;
    assert.deepEqual(body.subarray(0, LOG_LIMIT), Buffer.alloc(LOG_LIMIT, 'a'));
    assert.equal(body.subarray(LOG_LIMIT).toString(), marker);
    assert.equal(a['stdout.log'].sizeBytes, LOG_LIMIT + Buffer.byteLength(marker));
    assert.equal((await get(a['stderr.log'].url)).body.toString(), 'tail-line\n', 'the other log is whole');
    assert.equal(t.loud.result.errorMessage, `artifacts: stdout.log cut at the log limit of ${LOG_LIMIT} bytes: ${100_000 - LOG_LIMIT} bytes dropped`);
  });

  it('answers Range requests: 206 with the exact bytes, 416 when unsatisfiable, several ranges whole; HEAD without a body', async () => {
    const log = artifactsOf(logsPlan.t['with-logs'])['stdout.log'];
    const size = STDOUT.length;
    for (const [range, start, end] of [['bytes=0-9', 0, 9], ['bytes=5-', 5, size - 1], ['bytes=-3', size - 3, size - 1], [`bytes=100-${size + 50}`, 100, size - 1]] as const) {
      const { res, body } = await get(log.url, { range });
      assert.equal(res.status, 206, range);
      assert.equal(res.headers.get('content-range'), `bytes ${start}-${end}/${size}`, range);
      assert.equal(res.headers.get('content-length'), String(end - start + 1), range);
      assert.deepEqual(body, STDOUT.subarray(start, end + 1), range);
    }
    const bad = await get(log.url, { range: `bytes=${size}-` });
    assert.equal(bad.res.status, 416);
    assert.equal(bad.res.headers.get('content-range'), `bytes */${size}`);
    assert.match(JSON.parse(bad.body.toString()).error, new RegExp(`holds no byte of this ${size}-byte artifact`));
    const several = await get(log.url, { range: 'bytes=0-1,5-6' });
    assert.equal(several.res.status, 200);
    assert.deepEqual(several.body, STDOUT);
    const stale = await get(log.url, { range: 'bytes=0-1', 'if-range': '"another"' });
    assert.deepEqual([stale.res.status, stale.body.length], [200, size], 'If-Range with another validator: the whole');
    const head = await get(log.url, {}, 'HEAD');
    assert.deepEqual([head.res.status, head.res.headers.get('content-length'), head.body.length], [200, String(size), 0]);
    const empty = await get(artifactsOf(logsPlan.t['dir/with slash'])['stderr.log'].url, { range: 'bytes=0-' });
    assert.equal(empty.res.status, 416, 'an empty log has no byte to give');
  });

  it('names downloads safely and types them by name; what a browser would run is served as bytes', async () => {
    const a = artifactsOf(logsPlan.t['with-logs']);
    const txt = await get(a['résumé "q".txt'].url);
    assert.equal(txt.res.status, 200);
    assert.equal(txt.body.toString(), 'x');
    assert.equal(txt.res.headers.get('content-type'), 'text/plain; charset=utf-8');
    assert.equal(txt.res.headers.get('content-disposition'), `attachment; filename="r_sum_ _q_.txt"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22q%22.txt`);
    for (const name of ['data.bin', 'page.html']) {
      const r = await get(a[name].url);
      assert.equal(r.res.headers.get('content-type'), 'application/octet-stream', name);
      assert.match(r.res.headers.get('content-security-policy') ?? '', /sandbox/);
    }
    const missing = await get(`/artifacts/${randomUUID()}`);
    assert.equal(missing.res.status, 404);
    assert.deepEqual(JSON.parse(missing.body.toString()), { error: 'no such artifact' });
  });

  it('streams every artifact of a plan as one tar: <test name>/<attempt>/<artifact name>, names made safe', async () => {
    const { res, body } = await get(`/plans/${logsPlan.id}/artifacts.tar`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/x-tar');
    const entries = parseTar(body);
    const byPath = new Map(entries.map((e) => [e.path, e]));
    const want = new Map<string, any>();
    for (const test of logsPlan.plan.tests.nodes) {
      const dir = test.name === 'dir/with slash' ? 'dir_with slash' : test.name;
      for (const art of test.result.artifacts) want.set(`${dir}/1/${art.name}`, art);
    }
    assert.deepEqual([...byPath.keys()].sort(), [...want.keys()].sort());
    assert.ok(byPath.has('dir_with slash/1/out/sub/n.txt'));
    assert.ok(byPath.has('with-logs/1/résumé "q".txt'), 'a non-ASCII path (pax header)');
    for (const [path, art] of want) {
      const got = byPath.get(path)!;
      assert.equal(got.type, '0');
      assert.equal(createHash('sha256').update(got.data).digest('hex'), art.sha256, path);
    }
    assert.deepEqual(byPath.get('with-logs/1/stdout.log')!.data, STDOUT);
    const none = await get(`/plans/${randomUUID()}/artifacts.tar`);
    assert.equal(none.res.status, 404);
    assert.deepEqual(JSON.parse(none.body.toString()), { error: 'no such plan' });
  });

  it('a blob the store does not have is a 404 saying why, a store that cannot be read a 503: never a dropped connection', async () => {
    const { t } = await runPlan([{ name: 'gone', type: 'UNIT', script: `echo only-here-${randomUUID()}` }]);
    const log = artifactsOf(t.gone)['stdout.log'];
    rmSync(join(artifactDir, log.sha256.slice(0, 2), log.sha256));
    const missing = await get(log.url);
    assert.equal(missing.res.status, 404);
    assert.match(JSON.parse(missing.body.toString()).error, /not in the artifact store: it was deleted, or stored by a worker that does not share this server's ARTIFACT_DIR/);
    // the whole store away (a shared ARTIFACT_DIR not mounted)
    const aside = `${artifactDir}.aside`;
    const { renameSync } = await import('node:fs');
    renameSync(artifactDir, aside);
    try {
      const other = artifactsOf(logsPlan.t['with-logs'])['stderr.log'];
      const down = await get(other.url);
      assert.equal(down.res.status, 503);
      assert.match(JSON.parse(down.body.toString()).error, /artifact store does not exist on this server .*ARTIFACT_DIR/);
      const tar = await get(`/plans/${logsPlan.id}/artifacts.tar`);
      assert.equal(tar.res.status, 503);
      const status = await gql(url, '{ systemStatus { components { name healthy detail } } }');
      const c = status.data.systemStatus.components.find((x: any) => x.name === 'artifacts');
      assert.equal(c.healthy, false, JSON.stringify(c));
      assert.match(c.detail, /does not exist/);
    } finally {
      renameSync(aside, artifactDir);
    }
  });
});
