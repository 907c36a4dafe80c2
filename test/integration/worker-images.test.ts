// Images as a team uses them, through the API with a real worker that builds them: a test asks for an
// image with a package and imports it; an image whose build fails (an unknown package) is FAILED with
// apt's message, its queued tests end in ERROR with it and new ones are refused naming it; OCI images
// made here run from oci:, oci-archive: and docker-archive: and show exactly their last layer; a changed
// definition built by another worker is a new digest, while a test already running finishes on the old
// version. Images here have fixed names in the shared image cache (built once per machine where their
// definition does not change).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { loadConfig } from '../../src/config/config';
import { buildImage } from '../../src/images/builder';
import { collectGarbage } from '../../src/images/gc';
import { HostImages } from '../../src/worker/host-images';
import { gql, gqlOk, sleep } from '../helpers/gql';
import { makeTestOciImage, ociToolsMissing, type TestOciImage } from '../helpers/oci-image';
import { startTestRedis, type TestRedis } from '../helpers/redis';
import { startTestServer, type TestServer } from '../helpers/server';

const SUBMIT = `mutation($input: SubmitPlanInput!) { submitPlan(input: $input) { id } }`;
const PLAN = `query($id: ID!) { plan(id: $id) { status tests(first: 20) { nodes { name status attempts
  result { exitCode stdout stderr errorMessage } } } } }`;
const POOLS = JSON.stringify([{ name: 'container', kind: 'CONTAINER', cpus: 1, memoryMb: 512, image: 'debian-bookworm', capacity: 2, pids: 128, testTypes: ['UNIT'] }]);
const versioned = (marker: string) => ({ name: 'test-versioned', from: 'image:debian-bookworm', setup: `echo ${marker} > /etc/image-marker` });

const skip = ociToolsMissing();

describe('images built by a worker, chosen by tests', { skip: skip ?? false }, () => {
  let redis: TestRedis;
  let server: TestServer;
  let other: TestServer | null = null;
  let scratch: string;
  let oci: TestOciImage;
  let images: object[];

  before(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'orch-worker-images-'));
    oci = makeTestOciImage(scratch);
    images = [
      { name: 'test-yaml', from: 'image:debian-bookworm', packages: ['python3-yaml'] },
      { name: 'test-broken', from: 'image:debian-bookworm', packages: ['no-such-package-orch-test'] },
      { name: 'test-oci-dir', from: `oci:${oci.layout}:v2` },
      { name: 'test-oci-archive', from: `oci-archive:${oci.ociArchive}:v2` },
      { name: 'test-docker-archive', from: `docker-archive:${oci.dockerArchive}` },
      versioned('one'),
    ];
    redis = await startTestRedis();
    server = await startTestServer({ redisUrl: redis.url, worker: true, env: { POOLS, IMAGES: JSON.stringify(images) } });
  });
  after(async () => {
    await other?.stop();
    await server?.stop();
    await redis?.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  const submit = (url: string, tests: object[]) => gql(url, SUBMIT, { input: { name: `img-${randomUUID().slice(0, 6)}`, tests } });
  async function finished(url: string, id: string, timeoutMs = 240_000) {
    let last: unknown = null;
    for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(250)) {
      const { plan } = await gqlOk(url, PLAN, { id });
      last = plan;
      if (['PASSED', 'FAILED', 'CANCELLED'].includes(plan.status)) return Object.fromEntries(plan.tests.nodes.map((t: any) => [t.name, t]));
    }
    const images = await gqlOk(url, '{ images { name status digest error } systemStatus { components { name detail } } }');
    throw new Error(`plan ${id} did not finish: ${JSON.stringify(last)}; ${JSON.stringify(images)}`);
  }
  async function image(url: string, name: string, until: (i: any) => boolean, timeoutMs = 240_000) {
    for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(250)) {
      const i = (await gqlOk(url, 'query($n: String!) { image(name: $n) { name status digest error sizeBytes builtAt pools } }', { n: name })).image;
      if (until(i)) return i;
    }
    throw new Error(`image ${name} never got there`);
  }
  const unit = (name: string, script: string, image: string) => ({ name, type: 'UNIT', script, timeoutSeconds: 60, requirements: { image } });

  it('runs a test in the image it asks for: a package on the base, built on demand while the test waits QUEUED', async () => {
    const r = await submit(server.url, [unit('yaml', "python3 -c 'import yaml; print(\"yaml\", yaml.__version__)'", 'test-yaml'), unit('base', 'command -v python3 || echo no python3', 'debian-bookworm')]);
    assert.ok(r.data?.submitPlan?.id, JSON.stringify(r.errors));
    const t = await finished(server.url, r.data.submitPlan.id);
    assert.equal(t.yaml.status, 'PASSED', JSON.stringify(t.yaml.result));
    assert.match(t.yaml.result.stdout, /^yaml \d+\.\d+/);
    assert.equal(t.base.result.stdout, 'no python3\n', 'the base image is unchanged');
    const i = await image(server.url, 'test-yaml', (x) => x.status === 'READY');
    assert.match(i.digest, /^sha256:[0-9a-f]{64}$/);
    assert.ok(i.sizeBytes > 50e6 && i.builtAt && i.pools.includes('container'), JSON.stringify(i));
  });

  it('a failed build: FAILED with apt\'s message, its tests end in ERROR with it, new ones are refused naming it', async () => {
    // submitted while it may still be building: accepted, then ended by the failure
    const queued = await submit(server.url, [unit('needs-broken', 'echo never', 'test-broken')]);
    const i = await image(server.url, 'test-broken', (x) => x.status === 'FAILED');
    assert.match(i.error, /Unable to locate package no-such-package-orch-test/);
    assert.doesNotMatch(i.error, /\n/);
    assert.equal(i.digest, null);
    if (queued.data?.submitPlan?.id) {
      const t = await finished(server.url, queued.data.submitPlan.id);
      assert.equal(t['needs-broken'].status, 'ERROR');
      assert.match(t['needs-broken'].result.errorMessage, /image "test-broken" failed to build: .*Unable to locate package no-such-package-orch-test/);
      assert.equal(t['needs-broken'].result.stdout, '');
    } else assert.match(queued.errors?.[0]?.message ?? '', /image "test-broken" failed to build/);

    const refused = await submit(server.url, [unit('later', 'true', 'test-broken')]);
    assert.equal(refused.errors?.[0]?.extensions?.code, 'UNSCHEDULABLE', JSON.stringify(refused));
    assert.match(refused.errors![0].message, /image "test-broken" failed to build: .*Unable to locate package no-such-package-orch-test/);
    const { systemStatus } = await gqlOk(server.url, '{ systemStatus { components { name healthy detail } } }');
    const c = systemStatus.components.find((x: any) => x.name === 'images');
    assert.equal(c.healthy, false);
    assert.match(c.detail, /FAILED: test-broken/);
    // other images are not affected
    const ok = await submit(server.url, [unit('fine', 'echo fine', 'debian-bookworm')]);
    assert.equal((await finished(server.url, ok.data.submitPlan.id)).fine.status, 'PASSED');
  });

  for (const name of ['test-oci-dir', 'test-oci-archive', 'test-docker-archive']) {
    it(`an OCI image from ${name.slice(5)} shows exactly its second layer's view, with its Env`, async () => {
      const r = await submit(server.url, [unit('view', 'ls / | grep txt; cat /b.txt /c.txt; echo "FOO=$FOO"; test ! -e /a.txt && echo no a.txt', name)]);
      assert.ok(r.data?.submitPlan?.id, JSON.stringify(r.errors));
      const t = await finished(server.url, r.data.submitPlan.id);
      assert.equal(t.view.status, 'PASSED', JSON.stringify(t.view.result));
      assert.equal(t.view.result.stdout, 'b.txt\nc.txt\nlayer one b\nlayer two c\nFOO=from-oci\nno a.txt\n');
    });
  }

  it('a worker keeps the version its tests run on, though another built a newer one, and builds it again if it vanishes', async () => {
    const imageDir = mkdtempSync(join(tmpdir(), 'orch-host-images-'));
    const defs = (env: Record<string, string>) => loadConfig({ IMAGES: JSON.stringify([{ name: 'pinned', from: `oci:${oci.layout}:v2`, env }]) }).images;
    const logger = pino({ level: 'silent' });
    const reports: string[] = [];
    const mine = new HostImages({ imageDir, definitions: defs({ V: '1' }), build: true, report: async (n, r) => void reports.push(`${n} ${r.status}`), logger });
    try {
      await mine.prepare(['pinned']);
      assert.equal(await mine.settled('pinned'), 'READY');
      const first = await mine.forRun('pinned', 'a');
      assert.equal(first.state, 'ready');
      if (first.state !== 'ready') return;
      first.release();
      // another deployment builds its own definition of the name (now `current`) and collects garbage
      const other = await buildImage(imageDir, defs({ V: '2' }), 'pinned', { logger });
      assert.notEqual(other.digest, first.image.digest);
      await collectGarbage(imageDir, defs({ V: '2' }));
      const again = await mine.forRun('pinned', 'b');
      assert.equal(again.state, 'ready', 'the version this worker runs on was kept');
      if (again.state === 'ready') {
        assert.equal(again.image.digest, first.image.digest);
        again.release();
      }
      // removed by hand: the worker builds it again and its tests wait meanwhile
      rmSync(join(imageDir, 'pinned', first.image.digest.slice(7)), { recursive: true, force: true });
      assert.equal((await mine.forRun('pinned', 'c')).state, 'waiting');
      for (let i = 0; i < 100 && mine.status('pinned') !== 'READY'; i++) await sleep(100);
      const rebuilt = await mine.forRun('pinned', 'd');
      assert.equal(rebuilt.state, 'ready', JSON.stringify(reports));
      if (rebuilt.state === 'ready') rebuilt.release();
    } finally {
      await mine.stop();
      rmSync(imageDir, { recursive: true, force: true });
    }
  });

  it('a changed definition is a new version; a test running on the old one finishes on it', async () => {
    const v1 = await image(server.url, 'test-versioned', (x) => x.status === 'READY');
    const long = await submit(server.url, [unit('old', 'sleep 6; cat /etc/image-marker', 'test-versioned')]);
    // wait until it runs, then another worker with the changed definition builds it and collects garbage
    for (let n = 0; n < 200; n++, await sleep(100)) {
      const { plan } = await gqlOk(server.url, PLAN, { id: long.data.submitPlan.id });
      if (plan.tests.nodes[0].status === 'RUNNING') break;
    }
    other = await startTestServer({ redisUrl: redis.url, worker: true, env: { POOLS, IMAGES: JSON.stringify([versioned('two')]) } });
    const v2 = await image(other.url, 'test-versioned', (x) => x.status === 'READY' && x.digest !== v1.digest);
    assert.notEqual(v2.digest, v1.digest);
    const fresh = await submit(other.url, [unit('new', 'cat /etc/image-marker', 'test-versioned')]);
    assert.equal((await finished(other.url, fresh.data.submitPlan.id)).new.result.stdout, 'two\n');
    const t = await finished(server.url, long.data.submitPlan.id);
    assert.equal(t.old.status, 'PASSED', JSON.stringify(t.old.result));
    assert.equal(t.old.result.stdout, 'one\n', 'the running test kept the version it started with');
  });
});
