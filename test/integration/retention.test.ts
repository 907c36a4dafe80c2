// Retention as users see it: a plan past RETENTION_DAYS is deleted with its tests, runs and artifacts
// by the maintenance pass, a blob another plan shares is kept; deletePlan refuses a running plan and
// deletes a finished one at once; a bundle goes with the last plan that uses it (once its upload grace
// is over) and is kept while another plan uses it; systemStatus says how big the store is. Real server,
// worker, sandboxes.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gql, gqlOk, sleep } from '../helpers/gql';
import { startTestRedis, type TestRedis } from '../helpers/redis';
import { planFinished, submitTests, testsByName, waitForPlan } from '../helpers/plans';
import { startTestServer, type TestServer } from '../helpers/server';
import { file, tarOf } from '../helpers/tar-archives';

const PLAN = `query($id: ID!) { plan(id: $id) { id status counts { running queued total }
  tests(first: 20) { nodes { id name status result { artifacts { id name sha256 sizeBytes url } } } } } }`;
const SUBMIT = `mutation($input: SubmitPlanInput!) { submitPlan(input: $input) { id } }`;
const DELETE = `mutation($id: ID!) { deletePlan(id: $id) }`;
const STATUS = `{ systemStatus { completedTests components { name healthy detail } } }`;
const POOLS = JSON.stringify([
  { name: 'container', kind: 'CONTAINER', cpus: 1, memoryMb: 256, image: 'debian-bookworm', capacity: 2, pids: 64, testTypes: ['UNIT'] },
]);

describe('retention and deleting plans', () => {
  let redis: TestRedis;
  let server: TestServer;
  let url: string;
  let artifactDir: string;

  before(async () => {
    redis = await startTestRedis();
    artifactDir = mkdtempSync(join(tmpdir(), 'orch-retention-'));
    server = await startTestServer({ redisUrl: redis.url, worker: true, env: { POOLS, RETENTION_DAYS: '30', ARTIFACT_DIR: artifactDir } });
    url = server.url;
  });
  after(async () => {
    await server?.stop();
    await redis?.stop();
    rmSync(artifactDir, { recursive: true, force: true });
  });

  const submit = (tests: object[]) => submitTests(url, tests, {}, 'ret');
  async function waitPlan(id: string, done = planFinished) {
    const plan = await waitForPlan(url, PLAN, id, { done, everyMs: 200 });
    return { plan, t: testsByName(plan) };
  }
  const logOf = (test: any, name = 'stdout.log') => test.result.artifacts.find((a: any) => a.name === name);
  const blobPath = (sha256: string) => join(artifactDir, sha256.slice(0, 2), sha256);
  const status = async (path: string) => (await fetch(`${url}${path}`)).status;
  /** Makes a plan look finished `days` ago, as the retention job sees it. */
  const finishedDaysAgo = (id: string, days: number) =>
    server.core.db.prisma.$executeRawUnsafe(`UPDATE "execution_plan" SET "finished_at" = now() - make_interval(days => $2) WHERE "id" = $1::uuid`, id, days);

  it('deletes a plan finished more than RETENTION_DAYS ago with its tests, runs and blobs, but keeps a blob another plan shares', async () => {
    const shared = `shared-${randomUUID()}`;
    const old = await submit([
      { name: 'shared', type: 'UNIT', script: `echo ${shared}` },
      { name: 'unique', type: 'UNIT', script: `echo unique-${randomUUID()}` },
    ]);
    const young = await submit([{ name: 'shared-too', type: 'UNIT', script: `echo ${shared}` }]);
    const recent = await submit([{ name: 'recent', type: 'UNIT', script: `echo recent-${randomUUID()}` }]);
    const o = await waitPlan(old);
    const y = await waitPlan(young);
    const r = await waitPlan(recent);
    const sharedLog = logOf(o.t.shared);
    const uniqueLog = logOf(o.t.unique);
    assert.equal(logOf(y.t['shared-too']).sha256, sharedLog.sha256, 'the same output is one blob');
    for (const a of [sharedLog, uniqueLog]) assert.ok(existsSync(blobPath(a.sha256)));

    await finishedDaysAgo(old, 31);
    await finishedDaysAgo(recent, 29);
    const report = await server.maintenance.pass();
    assert.equal(report.ran, true);
    assert.equal(report.plans, 1);

    assert.equal((await gqlOk(url, PLAN, { id: old })).plan, null, 'the old plan is gone');
    assert.equal((await gqlOk(url, `query($id: ID!) { test(id: $id) { id } }`, { id: o.t.unique.id })).test, null, 'and its tests');
    for (const a of [...o.t.shared.result.artifacts, ...o.t.unique.result.artifacts]) assert.equal(await status(a.url), 404, a.name);
    assert.equal(existsSync(blobPath(uniqueLog.sha256)), false, 'its own blob is removed from the store');
    assert.equal(existsSync(blobPath(sharedLog.sha256)), true, 'a blob another plan references is kept');
    const kept = await fetch(`${url}${logOf(y.t['shared-too']).url}`);
    assert.equal(kept.status, 200);
    assert.equal(await kept.text(), `${shared}\n`);
    assert.ok((await gqlOk(url, PLAN, { id: recent })).plan, 'a plan within its retention stays');
    assert.equal(await status(logOf(r.t.recent).url), 200);
    const rows = await server.core.db.prisma.$queryRawUnsafe<{ n: bigint }[]>(
      `SELECT count(*) AS n FROM "test_run" r JOIN "test_case" t ON t."id" = r."test_id" WHERE t."plan_id" = $1::uuid`,
      old,
    );
    assert.equal(Number(rows[0].n), 0, 'no run of it is left');
  });

  it('deletePlan refuses a running plan (cancel it first), then deletes it once finished: its artifacts answer 404', async () => {
    const id = await submit([
      { name: 'quick', type: 'UNIT', script: `echo quick-${randomUUID()}` },
      { name: 'slow', type: 'UNIT', script: 'sleep 60' },
    ]);
    const running = await waitPlan(id, (p) => p.tests.nodes.some((t: any) => t.name === 'quick' && t.status === 'PASSED') && p.tests.nodes.some((t: any) => t.name === 'slow' && t.status === 'RUNNING'));
    const refused = await gql(url, DELETE, { id });
    assert.equal(refused.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT');
    assert.match(refused.errors![0].message, new RegExp(`plan ${id} cannot be deleted: 1 of its tests is still queued or running; cancel it first \\(cancelPlan\\)`));
    const quickLog = logOf(running.t.quick);
    assert.equal(await status(quickLog.url), 200, 'nothing was deleted');

    await gqlOk(url, `mutation($id: ID!) { cancelPlan(id: $id) { id } }`, { id });
    await waitPlan(id);
    assert.deepEqual(await gqlOk(url, DELETE, { id }), { deletePlan: true });
    assert.equal((await gqlOk(url, PLAN, { id })).plan, null);
    assert.equal(await status(quickLog.url), 404);
    assert.equal(existsSync(blobPath(quickLog.sha256)), false);
    assert.equal(await status(`/plans/${id}/artifacts.tar`), 404);
    const again = await gql(url, DELETE, { id });
    assert.equal(again.errors?.[0]?.extensions?.code, 'NOT_FOUND');
  });

  it('deletes a bundle with the last plan that uses it, keeps it while another plan uses it, and deletes uploads no plan used once their grace is over', async () => {
    const bundleRoot = join(server.dataDir, 'bundles');
    const upload = async (body: Buffer) => {
      const res = await fetch(`${url}/bundles`, { method: 'POST', headers: { 'content-type': 'application/x-tar' }, body });
      assert.equal(res.status, 201);
      return ((await res.json()) as { id: string }).id;
    };
    const treeOf = (id: string) => join(bundleRoot, id.slice('sha256:'.length), 'tree');
    const rowOf = async (id: string) => (await server.core.db.prisma.bundle.findUnique({ where: { id } })) !== null;
    /** As if the bundle was last uploaded an hour ago (past the 10-minute grace). */
    const uploadedLongAgo = (id: string) => server.core.db.prisma.$executeRawUnsafe(`UPDATE "bundle" SET "uploaded_at" = now() - interval '1 hour' WHERE "id" = $1`, id);
    const tag = randomUUID();
    const tar = tarOf([file('run.sh', `echo bundle-${tag}\n`, 0o755)]);
    const id = await upload(tar);
    const withBundle = async () => (await gqlOk(url, SUBMIT, { input: { name: `ret-b-${tag.slice(0, 6)}`, bundle: id, tests: [{ name: 'b', type: 'UNIT', script: './run.sh' }] } })).submitPlan.id as string;
    const first = await withBundle();
    const second = await withBundle();
    for (const p of [first, second]) assert.equal((await waitPlan(p)).plan.status, 'PASSED');
    const shown = await fetch(`${url}/bundles/${id}`);
    assert.equal(shown.status, 200);
    const info = (await shown.json()) as Record<string, unknown>;
    assert.deepEqual({ ...info, uploadedAt: typeof info.uploadedAt }, { id, sizeBytes: Buffer.byteLength(`echo bundle-${tag}\n`), files: 1, archiveBytes: tar.length, uploadedAt: 'string', plans: 2 });
    await uploadedLongAgo(id);

    assert.deepEqual(await gqlOk(url, DELETE, { id: first }), { deletePlan: true });
    assert.equal(await rowOf(id), true, 'another plan uses the bundle: kept');
    assert.equal(existsSync(treeOf(id)), true);

    assert.deepEqual(await gqlOk(url, DELETE, { id: second }), { deletePlan: true });
    assert.equal(await rowOf(id), false, 'the last plan that used it is gone: so is the bundle');
    assert.equal(existsSync(treeOf(id)), false, 'and its files');
    assert.deepEqual(readdirSync(join(bundleRoot, 'tmp')), [], 'nothing left behind');
    const notThere = await fetch(`${url}/bundles/${id}`);
    assert.equal(notThere.status, 404);
    assert.match(((await notThere.json()) as { error: string }).error, /^no bundle "sha256:[0-9a-f]{64}" is stored \(upload it with POST \/bundles\)$/);
    assert.equal((await fetch(`${url}/bundles/..%2F..%2Fetc`)).status, 404);
    const gone = await gql(url, SUBMIT, { input: { name: 'after', bundle: id, tests: [{ name: 'b', type: 'UNIT', script: './run.sh' }] } });
    assert.equal(gone.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT');
    assert.match(gone.errors![0].message, /was not uploaded/);

    // the same bytes uploaded again: the same id, usable again
    assert.equal(await upload(tar), id);
    const again = await withBundle();
    const a = await waitPlan(again);
    assert.equal(a.plan.status, 'PASSED');

    // an upload no plan uses: kept within its grace, deleted by the maintenance pass after it
    const unused = await upload(tarOf([file('unused.txt', `unused-${tag}`)]));
    await server.maintenance.pass();
    assert.equal(await rowOf(unused), true, 'just uploaded: kept (a plan naming it may be on its way)');
    await uploadedLongAgo(unused);
    await uploadedLongAgo(id); // used by a plan still there: kept whatever its age
    await server.maintenance.pass();
    assert.equal(await rowOf(unused), false, 'unused past its grace: deleted');
    assert.equal(existsSync(treeOf(unused)), false);
    assert.equal(await rowOf(id), true);
    assert.equal(existsSync(treeOf(id)), true);
  });

  it('says in systemStatus how big the artifact store is (a running total, set right by a scan)', async () => {
    const walk = () => {
      let bytes = 0;
      let blobs = 0;
      for (const d of readdirSync(artifactDir).filter((n) => /^[0-9a-f]{2}$/.test(n))) {
        for (const f of readdirSync(join(artifactDir, d))) {
          bytes += statSync(join(artifactDir, d, f)).size;
          blobs += 1;
        }
      }
      return { bytes, blobs };
    };
    const component = async () => {
      const s = await gqlOk(url, STATUS);
      const c = s.systemStatus.components.find((x: any) => x.name === 'artifacts');
      assert.ok(c, JSON.stringify(s.systemStatus.components));
      const m = /(\d+) bytes\)? in (\d+) blobs?/.exec(c.detail);
      assert.ok(m, c.detail);
      return { healthy: c.healthy, bytes: Number(m[1]), blobs: Number(m[2]), detail: c.detail };
    };
    await server.maintenance.pass({ scan: true });
    const scanned = await component();
    assert.equal(scanned.healthy, true, scanned.detail);
    assert.deepEqual({ bytes: scanned.bytes, blobs: scanned.blobs }, walk());
    assert.match(scanned.detail, /last scanned/);
    const bundleRows = await server.core.db.prisma.bundle.count();
    assert.match(scanned.detail, new RegExp(`; bundles .+ in ${bundleRows} bundles?$`), 'and the bundle store: its size and count');

    // new blobs are counted as they are stored, without a scan
    const big = 'x'.repeat(5000);
    const { t } = await waitPlan(await submit([{ name: 'adds', type: 'UNIT', script: `echo ${big}-${randomUUID()}` }]));
    assert.ok(logOf(t.adds).sizeBytes > 5000);
    const counted = await component();
    assert.deepEqual({ bytes: counted.bytes, blobs: counted.blobs }, walk());
    assert.ok(counted.bytes > scanned.bytes + 5000);
  });
});
