// Disk limits as a user sees them, through the API, a worker and real sandboxes (issue 6, item 9): a
// test that writes past its pool's diskMb ends FAILED saying so; a test with more artifact files than
// MAX_ARTIFACT_FILES keeps that many and says how many were left out; afterwards the host holds no
// more than it did before (the environment's disk is given back, no run left in DATA_DIR).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gqlOk, sleep } from '../helpers/gql';
import { startTestRedis, type TestRedis } from '../helpers/redis';
import { startTestServer, type TestServer } from '../helpers/server';

const DISK_MB = 32;
const MAX_FILES = 250;
const POOLS = JSON.stringify([
  { name: 'small-disk', kind: 'CONTAINER', cpus: 1, memoryMb: 256, image: 'debian-bookworm', capacity: 1, pids: 64, diskMb: DISK_MB, testTypes: ['UNIT'] },
]);
const SUBMIT = `mutation($input: SubmitPlanInput!) { submitPlan(input: $input) { id } }`;
const PLAN = `query($id: ID!) { plan(id: $id) { status counts { running queued }
  tests(first: 10) { nodes { id name status result { exitCode stderr errorMessage artifactCount artifacts { name sizeBytes } } } } } }`;

/** Bytes the host holds for a path (allocated blocks), not crossing into mounted filesystems. */
function hostBytes(p: string): number {
  const r = spawnSync('du', ['-s', '-B1', '-x', p], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`du ${p}: ${r.stderr}`);
  return Number(r.stdout.split('\t')[0]);
}

/** The state dirs of the container drivers running in driver hosts this process started. */
function ourInstanceDirs(): string[] {
  const base = join(tmpdir(), 'test-orchestrator', 'container');
  const children = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((pid) => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      return ppid === process.pid && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('driver-host');
    } catch {
      return false; // exited meanwhile
    }
  });
  if (!existsSync(base)) return [];
  return readdirSync(base).filter((n) => children.some((pid) => n.startsWith(`p${pid}.`))).map((n) => join(base, n));
}

describe('disk limits through the worker', () => {
  let redis: TestRedis;
  let server: TestServer;
  let url: string;
  const skip = process.getuid?.() === 0 ? null : 'disk limits need root (loop mounts)';

  before(async () => {
    if (skip) return;
    redis = await startTestRedis();
    server = await startTestServer({ redisUrl: redis.url, worker: true, env: { POOLS, MAX_ARTIFACT_FILES: String(MAX_FILES) } });
    url = server.url;
  });
  after(async () => {
    await server?.stop();
    await redis?.stop();
  });

  async function runPlan(tests: object[]) {
    const { submitPlan } = await gqlOk(url, SUBMIT, { input: { name: `disk-${randomUUID().slice(0, 6)}`, tests } });
    const deadline = Date.now() + 120_000;
    for (;;) {
      const { plan } = await gqlOk(url, PLAN, { id: submitPlan.id });
      if (['PASSED', 'FAILED'].includes(plan.status) && plan.counts.running === 0 && plan.counts.queued === 0) {
        return Object.fromEntries(plan.tests.nodes.map((t: any) => [t.name, t]));
      }
      if (Date.now() > deadline) throw new Error(`plan not finished: ${JSON.stringify(plan)}`);
      await sleep(200);
    }
  }
  async function allReady() {
    for (let i = 0; i < 300; i++) {
      const envs = (await gqlOk(url, `{ environments(pool: "small-disk") { status } }`)).environments;
      if (envs.length > 0 && envs.every((e: any) => e.status === 'READY')) return;
      await sleep(100);
    }
    throw new Error('the environments did not come back READY');
  }

  it('fails a test that writes past its disk limit, caps its artifact files, and gives the host its disk back', async (t) => {
    if (skip) return t.skip(skip);
    // A first test, so the environment exists and has been reset once: the baseline.
    const warm = await runPlan([{ name: 'warm', type: 'UNIT', script: 'echo hi > a.txt' }]);
    assert.equal(warm.warm.status, 'PASSED', JSON.stringify(warm.warm.result));
    await allReady();
    const dirs = ourInstanceDirs();
    assert.equal(dirs.length, 1, `the worker's driver state dir: ${dirs}`);
    const baseline = hostBytes(dirs[0]);

    const t1 = await runPlan([
      { name: 'fills-disk', type: 'UNIT', script: 'dd if=/dev/zero of=big bs=1M count=100 status=none; echo "wrote $(du -m big | cut -f1) MB" >&2; exit 1' },
      { name: 'many-files', type: 'UNIT', artifactPaths: ['out'], script: `mkdir out && for i in $(seq 1 ${MAX_FILES + 10}); do echo $i > out/f$(printf %03d $i); done` },
    ]);
    const full = t1['fills-disk'];
    assert.equal(full.status, 'FAILED', JSON.stringify(full.result));
    assert.match(full.result.errorMessage, new RegExp(`^hit its disk limit of ${DISK_MB} MB \\(No space left on device\\)`));
    assert.match(full.result.stderr, /No space left on device/);

    const many = t1['many-files'];
    assert.equal(many.status, 'PASSED', JSON.stringify(many.result));
    // the complete logs (stdout.log, stderr.log) have a limit of their own: not counted as the test's files
    assert.equal(many.result.artifactCount, MAX_FILES + 2);
    assert.equal(many.result.artifacts.length, MAX_FILES + 2, 'all of them in the default page');
    assert.deepEqual(many.result.artifacts.filter((a: any) => !a.name.startsWith('out/')).map((a: any) => a.name), ['stderr.log', 'stdout.log']);
    assert.equal(many.result.errorMessage, `artifacts: 10 more matching files left out (limit ${MAX_FILES} files per test)`);
    const names = many.result.artifacts.map((a: any) => a.name);
    assert.deepEqual(names, [...names].sort(), 'in name order');
    // and a page at a time, beyond the first 100 a result carries
    const page = (await gqlOk(url, `query($id: ID!) { test(id: $id) { result { artifactCount artifacts(first: 100, offset: 200) { name } } } }`, { id: many.id })).test.result;
    assert.deepEqual(page.artifacts.map((a: any) => a.name), names.slice(200, 300));
    assert.equal(page.artifacts.length, MAX_FILES + 2 - 200);

    // Back to where it was: the environment's disk holds what a fresh one does, no run is left.
    await allReady();
    const [dir] = ourInstanceDirs();
    assert.equal(dir, dirs[0]);
    // the instance dir holds the environments' dirs and the driver's own seccomp programs
    const envDirs = readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    assert.ok(envDirs.length > 0, 'the pool has environments');
    for (const env of envDirs) {
      assert.deepEqual(readdirSync(join(dir, env)).sort(), ['disk.img', 'run', 'work'], `only the environment's fs in ${env}`);
      assert.deepEqual(readdirSync(join(dir, env, 'work')), [], 'its /work is empty');
    }
    const now = hostBytes(dir);
    assert.ok(now <= baseline + 2 * 1024 * 1024, `the driver's state dir holds ${now} bytes, ${baseline} before the tests`);
    assert.deepEqual(readdirSync(join(server.dataDir, 'runs')), [], 'no run left in DATA_DIR/runs');
  });
});
