// Scaled mode and the artifact store: `serve` and `worker` processes, each with its own DATA_DIR, on one
// PostgreSQL server and one Redis. With a shared ARTIFACT_DIR an API serves what a worker stored; an
// API that does not share it answers a clear 404 saying why, never a dropped connection.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gqlOk, sleep } from '../helpers/gql';
import { spawnOrchestrator, startOrchestrator, type OrchestratorProcess } from '../helpers/orchestrator-process';
import { startTestPostgres, type TestPostgres } from '../helpers/postgres';
import { startTestRedis, type TestRedis } from '../helpers/redis';
import { testImageDir } from '../helpers/sandbox-env';

const POOLS = JSON.stringify([{ name: 'container', kind: 'CONTAINER', cpus: 1, memoryMb: 256, image: 'debian-bookworm', capacity: 2, testTypes: ['UNIT'] }]);
const PLAN = `query($id: ID!) { plan(id: $id) { status counts { running queued } tests(first: 10) { nodes { name status result { artifacts { name url sizeBytes } } } } } }`;

describe('scaled mode: the artifact store', () => {
  let pg: TestPostgres;
  let redis: TestRedis;
  let shared: string;
  const procs: OrchestratorProcess[] = [];
  let apiShared: OrchestratorProcess;
  let apiAlone: OrchestratorProcess;

  before(async () => {
    [pg, redis] = await Promise.all([startTestPostgres(), startTestRedis()]);
    shared = mkdtempSync(join(tmpdir(), 'orch-shared-artifacts-'));
    const env = { DATABASE_URL: await pg.createDatabase(), REDIS_URL: redis.url, REDIS_PREFIX: `s${randomUUID().slice(0, 8)}`, POOLS, IMAGE_DIR: testImageDir() };
    apiShared = await startOrchestrator('serve', { env: { ...env, ARTIFACT_DIR: shared } });
    procs.push(apiShared);
    apiAlone = await startOrchestrator('serve', { env }); // its own DATA_DIR/artifacts
    procs.push(apiAlone);
    procs.push(await spawnOrchestrator('worker', { env: { ...env, ARTIFACT_DIR: shared } }));
  });
  after(async () => {
    for (const p of procs) {
      await p.stop();
      p.cleanup();
    }
    await redis?.stop();
    await pg?.stop();
    rmSync(shared, { recursive: true, force: true });
  });

  it('an API sharing the worker ARTIFACT_DIR serves its artifacts; one that does not answers 404 saying why', async () => {
    const word = `scaled-${randomUUID()}`;
    const { submitPlan } = await gqlOk(apiShared.url, `mutation($input: SubmitPlanInput!) { submitPlan(input: $input) { id } }`, {
      input: { name: 'scaled', tests: [{ name: 'a', type: 'UNIT', script: `echo ${word}` }, { name: 'b', type: 'UNIT', script: `echo ${word}-b >&2` }] },
    });
    let plan: any;
    const deadline = Date.now() + 120_000;
    for (;;) {
      plan = (await gqlOk(apiAlone.url, PLAN, { id: submitPlan.id })).plan;
      if (plan.status === 'PASSED' && plan.counts.running === 0 && plan.counts.queued === 0) break;
      assert.ok(Date.now() < deadline, `plan not finished: ${JSON.stringify(plan)}\n${procs[2].log(30)}`);
      await sleep(300);
    }
    const a = plan.tests.nodes.find((t: any) => t.name === 'a');
    const log = a.result.artifacts.find((x: any) => x.name === 'stdout.log');
    const ok = await fetch(`${apiShared.url}${log.url}`);
    assert.equal(ok.status, 200);
    assert.equal(await ok.text(), `${word}\n`);

    const alone = await fetch(`${apiAlone.url}${log.url}`);
    assert.equal(alone.status, 404);
    assert.match(alone.headers.get('content-type') ?? '', /application\/json/);
    assert.match(((await alone.json()) as { error: string }).error, /stored by a worker that does not share this server's ARTIFACT_DIR/);
    const tar = await fetch(`${apiAlone.url}/plans/${submitPlan.id}/artifacts.tar`);
    assert.equal(tar.status, 200, 'the tar is whole: unreadable blobs are entries saying why');
    assert.match(Buffer.from(await tar.arrayBuffer()).toString('latin1'), /a\/1\/stdout\.log\.unavailable\.txt/);
  });
});
