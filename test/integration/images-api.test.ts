// Images as the API shows them, and what a submission gets when its image cannot serve it: a name no
// image has, an image its pool does not offer, an image whose build failed. No worker: the states are
// reported as a worker reports them (through the images service).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { gql, gqlOk } from '../helpers/gql';
import { startTestRedis, type TestRedis } from '../helpers/redis';
import { startTestServer, type TestServer } from '../helpers/server';

const IMAGES = JSON.stringify([
  { name: 'debian-bookworm', from: 'debian:bookworm' },
  { name: 'with-yaml', from: 'image:debian-bookworm', packages: ['python3-yaml'] },
  { name: 'broken', from: 'image:debian-bookworm', packages: ['no-such-package-xyz'] },
]);
const POOLS = JSON.stringify([
  { name: 'container', kind: 'CONTAINER', cpus: 1, memoryMb: 256, image: 'debian-bookworm', capacity: 1, testTypes: ['UNIT'] },
  { name: 'strict', kind: 'CONTAINER', cpus: 1, memoryMb: 256, image: 'debian-bookworm', images: ['debian-bookworm'], tags: ['strict'], capacity: 1, testTypes: ['UNIT'] },
]);
const IMAGE_FIELDS = 'name source packages status digest sizeBytes builtAt error pools';
const SUBMIT = 'mutation($input: SubmitPlanInput!) { submitPlan(input: $input) { id } }';

describe('images in the API', () => {
  let redis: TestRedis;
  let server: TestServer;
  before(async () => {
    redis = await startTestRedis();
    server = await startTestServer({ redisUrl: redis.url, env: { IMAGES, POOLS } });
  });
  after(async () => {
    await server?.stop();
    await redis?.stop();
  });

  const storedTests = async () => (await gqlOk(server.url, '{ systemStatus { counts { total } } }')).systemStatus.counts.total;
  const submit = (image: string | null, tags?: string[]) =>
    gql(server.url, SUBMIT, { input: { name: 'p', tests: [{ name: 't', type: 'UNIT', script: 'true', requirements: { ...(image ? { image } : {}), ...(tags ? { tags } : {}) } }] } });

  it('lists every configured image, MISSING until a worker reports it, with the pools that offer it', async () => {
    const { images } = await gqlOk(server.url, `{ images { ${IMAGE_FIELDS} } }`);
    assert.deepEqual(
      images.map((i: any) => [i.name, i.source, i.packages, i.status, i.digest, i.pools]),
      [
        // the default services image (not replaced here), then the configured ones
        ['debian-bookworm-services', 'image:debian-bookworm', images[0].packages, 'MISSING', null, ['container']],
        ['debian-bookworm', 'debian:bookworm', [], 'MISSING', null, ['container', 'strict']],
        ['with-yaml', 'image:debian-bookworm', ['python3-yaml'], 'MISSING', null, ['container']],
        ['broken', 'image:debian-bookworm', ['no-such-package-xyz'], 'MISSING', null, ['container']],
      ],
    );
    assert.equal((await gqlOk(server.url, '{ image(name: "nope") { name } }')).image, null);
    assert.equal((await gqlOk(server.url, '{ image(name: "with-yaml") { name status } }')).image.status, 'MISSING');
  });

  it('refuses a test naming no configured image, or one its pool does not offer, and stores nothing', async () => {
    const before = await storedTests();
    const unknown = await submit('no-such-image');
    assert.equal(unknown.errors?.[0]?.extensions?.code, 'UNSCHEDULABLE', JSON.stringify(unknown));
    assert.match(unknown.errors![0].message, /no image "no-such-image" is configured \(configured: debian-bookworm-services, debian-bookworm, with-yaml, broken\)/);
    const notOffered = await submit('with-yaml', ['strict']);
    assert.equal(notOffered.errors?.[0]?.extensions?.code, 'UNSCHEDULABLE', JSON.stringify(notOffered));
    assert.match(notOffered.errors![0].message, /pool "strict" does not offer image with-yaml/);
    assert.equal(await storedTests(), before);
    // the image its pool offers is accepted (it waits QUEUED until a worker has it)
    assert.ok((await submit('with-yaml')).data?.submitPlan?.id);
  });

  it('shows a failed build with its message, refuses its new tests naming the image and why, and reports the images component', async () => {
    const images = server.core.services.images;
    await images.report('broken', { status: 'FAILED', error: 'packages: E: Unable to locate package no-such-package-xyz', host: 'h1' });
    await images.report('with-yaml', { status: 'READY', digest: `sha256:${'a'.repeat(64)}`, sizeBytes: 1234, builtAt: new Date('2026-12-01T10:00:00Z'), error: null, host: 'h1' });
    const { images: list } = await gqlOk(server.url, `{ images { ${IMAGE_FIELDS} } }`);
    const broken = list.find((i: any) => i.name === 'broken');
    assert.equal(broken.status, 'FAILED');
    assert.equal(broken.error, 'packages: E: Unable to locate package no-such-package-xyz');
    const ready = list.find((i: any) => i.name === 'with-yaml');
    assert.deepEqual([ready.status, ready.digest, ready.sizeBytes, ready.builtAt, ready.error], ['READY', `sha256:${'a'.repeat(64)}`, 1234, '2026-12-01T10:00:00.000Z', null]);

    const before = await storedTests();
    const r = await submit('broken');
    assert.equal(r.errors?.[0]?.extensions?.code, 'UNSCHEDULABLE', JSON.stringify(r));
    assert.match(r.errors![0].message, /tests\[0\] "t": image "broken" failed to build: packages: E: Unable to locate package no-such-package-xyz/);
    assert.equal(await storedTests(), before, 'nothing stored');

    const { systemStatus } = await gqlOk(server.url, '{ systemStatus { healthy components { name healthy detail } } }');
    const component = systemStatus.components.find((c: any) => c.name === 'images');
    assert.equal(component.healthy, false);
    assert.match(component.detail, /FAILED: broken \(packages: E: Unable to locate package no-such-package-xyz\)/);
    assert.match(component.detail, /ready: with-yaml/);
    assert.equal(systemStatus.healthy, false);

    // fixed (a worker built it after all): accepted again, the component healthy
    await images.report('broken', { status: 'READY', digest: `sha256:${'b'.repeat(64)}`, error: null, host: 'h1' });
    assert.ok((await submit('broken')).data?.submitPlan?.id);
    const after = (await gqlOk(server.url, '{ systemStatus { components { name healthy } } }')).systemStatus.components.find((c: any) => c.name === 'images');
    assert.equal(after.healthy, true);
  });
});
