// Tests that ask for a VM (`requirements: { kind: QEMU }`), submitted through the API and run by a
// worker in a warm QEMU VM: the guest's own kernel, exit codes, timeouts, a bundle, artifacts, and a
// VM killed from the host (UNHEALTHY, replaced, the test retried). One VM serves the whole file.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gqlOk, sleep } from '../helpers/gql';
import { startTestRedis, type TestRedis } from '../helpers/redis';
import { makeTempDir, type TempDir } from '../helpers/sandbox-env';
import { submitTests, testsByName, waitForPlan } from '../helpers/plans';
import { startTestServer, type TestServer } from '../helpers/server';

const POOLS = JSON.stringify([
  { name: 'vm', kind: 'QEMU', cpus: 1, memoryMb: 384, image: 'debian-bookworm', capacity: 1, pids: 256, testTypes: ['UNIT'] },
  { name: 'container', kind: 'CONTAINER', cpus: 1, memoryMb: 256, image: 'debian-bookworm', capacity: 1, pids: 64, testTypes: ['UNIT'] },
]);
const PLAN = `query($id: ID!) { plan(id: $id) { id status counts { running queued total }
  tests(first: 100) { nodes { id name status attempts environment { id pool kind }
    result { exitCode signal stdout stderr timedOut durationMs errorMessage artifacts { name kind sizeBytes sha256 url } } } } } }`;
const QEMU = { kind: 'QEMU' };

describe('tests in QEMU VMs through the API', () => {
  let redis: TestRedis;
  let server: TestServer;
  let url: string;
  let tmp: TempDir;
  let skip: string | null = null;

  before(async () => {
    tmp = makeTempDir('orch-qemu-it-');
    if (!existsSync('/usr/bin/qemu-system-x86_64')) {
      skip = 'qemu-system-x86 is not installed (scripts/debian-packages.txt)';
      return;
    }
    redis = await startTestRedis();
    server = await startTestServer({ redisUrl: redis.url, worker: true, env: { POOLS, WORKER_HEARTBEAT_MS: '1000' } });
    url = server.url;
  });
  after(async () => {
    await server?.stop();
    await redis?.stop();
    tmp?.cleanup();
  });

  const submit = (tests: object[], extra: object = {}) => submitTests(url, tests, extra, 'qemu');
  const waitPlan = (id: string) => waitForPlan(url, PLAN, id, { timeoutMs: 240_000, everyMs: 200 });
  const byName = testsByName;

  it('PASSED with the guest kernel, FAILED with exit 5, TIMED_OUT at 5 s, an artifact byte-exact; no kind: a container', async (t) => {
    if (skip) return t.skip(skip);
    const plan = await waitPlan(
      await submit([
        { name: 'kernel', type: 'UNIT', requirements: QEMU, script: 'uname -r' },
        { name: 'exit-5', type: 'UNIT', requirements: QEMU, script: 'echo failing; exit 5' },
        { name: 'sleeps', type: 'UNIT', requirements: QEMU, timeoutSeconds: 5, script: 'echo sleeping; sleep 100' },
        {
          name: 'artifact', type: 'UNIT', requirements: QEMU, artifactPaths: ['out/*.bin'],
          script: 'mkdir out; head -c 100000 /dev/urandom > out/data.bin; sha256sum out/data.bin',
        },
        { name: 'anywhere', type: 'UNIT', script: 'uname -r' },
      ]),
    );
    const tests = byName(plan);
    const kernel = tests.kernel;
    assert.equal(kernel.status, 'PASSED', JSON.stringify(kernel));
    assert.equal(kernel.environment.kind, 'QEMU');
    const release = kernel.result.stdout.trim();
    assert.match(release, /^\d+\.\d+\.\d+-\d+-amd64$/, 'the Debian kernel');
    assert.notEqual(release, os.release(), "the guest's kernel, not the host's");
    assert.equal(tests.anywhere.environment.kind, 'CONTAINER', 'a test that names no kind runs in a container');
    assert.equal(tests.anywhere.result.stdout.trim(), os.release());

    assert.equal(tests['exit-5'].status, 'FAILED');
    assert.equal(tests['exit-5'].result.exitCode, 5);
    assert.equal(tests['exit-5'].result.stdout, 'failing\n');

    const sleeps = tests.sleeps;
    assert.equal(sleeps.status, 'TIMED_OUT', JSON.stringify(sleeps));
    assert.equal(sleeps.result.timedOut, true);
    assert.equal(sleeps.result.stdout, 'sleeping\n');
    assert.ok(sleeps.result.durationMs >= 5000 && sleeps.result.durationMs < 5000 + 5000, `ended ${sleeps.result.durationMs} ms after its start`);
    assert.equal(sleeps.attempts, 1, 'a timeout is the test\'s, not retried');

    const art = tests.artifact;
    assert.equal(art.status, 'PASSED', JSON.stringify(art));
    const file = art.result.artifacts.find((a: any) => a.name === 'out/data.bin');
    assert.ok(file, JSON.stringify(art.result.artifacts));
    const inGuest = art.result.stdout.split(' ')[0];
    const res = await fetch(new URL(file.url, url));
    const bytes = Buffer.from(await res.arrayBuffer());
    assert.equal(bytes.length, 100000);
    assert.equal(createHash('sha256').update(bytes).digest('hex'), inGuest, 'downloaded byte-exact');
    assert.equal(file.sha256, inGuest);
  });

  it("a bundle's script runs in the guest on its data", async (t) => {
    if (skip) return t.skip(skip);
    const src = path.join(tmp.path, 'project');
    mkdirSync(path.join(src, 'data'), { recursive: true });
    writeFileSync(path.join(src, 'run.sh'), '#!/bin/sh\necho "kernel $(uname -r)"\necho "sum $(( $(cat data/a) + $(cat data/b) ))"\n', { mode: 0o755 });
    writeFileSync(path.join(src, 'data/a'), '40\n');
    writeFileSync(path.join(src, 'data/b'), '2\n');
    const archive = execFileSync('tar', ['-C', src, '-czf', '-', '.']);
    const res = await fetch(`${url}/bundles`, { method: 'POST', headers: { 'content-type': 'application/gzip' }, body: archive });
    const bundle = (await res.json()) as { id: string };
    assert.equal(res.status, 201, JSON.stringify(bundle));
    const plan = await waitPlan(await submit([{ name: 'project', type: 'UNIT', requirements: QEMU, script: './run.sh' }], { bundle: bundle.id }));
    const test = byName(plan).project;
    assert.equal(test.status, 'PASSED', JSON.stringify(test));
    assert.equal(test.environment.kind, 'QEMU');
    assert.match(test.result.stdout, /^kernel \d+\.\d+\.\d+-\d+-amd64\nsum 42\n$/);
    assert.doesNotMatch(test.result.stdout, new RegExp(os.release().replace(/[.+]/g, '\\$&')));
  });

  it('a test that leaves its chroot as the guest root and plants a link in the job dir gets nothing of the host', async (t) => {
    if (skip) return t.skip(skip);
    // root in the guest: out of its chroot (perl: chroot, climb, chroot again) to the agent's root,
    // where the host's job dir is mounted over 9p, it swaps out/ for a link to the guest's / — a host
    // that followed it as root would read (and copy into artifacts) its own files.
    const escape = [
      `perl -e 'mkdir "/tmp/x"; chroot "/tmp/x" or die "chroot: $!"; chdir ".." for 1..40; chroot "." or die "chroot back: $!";`,
      `exec "/bin/sh", "-c", "rm -rf /job/out /job/ctl; ln -s / /job/out; ln -s /etc /job/ctl; echo planted"'`,
    ].join(' ');
    const plan = await waitPlan(await submit([{ name: 'escape', type: 'UNIT', requirements: QEMU, maxRetries: 0, script: escape, artifactPaths: ['**'] }]));
    const test = plan.tests.nodes[0];
    assert.equal(test.status, 'ERROR', JSON.stringify(test));
    assert.match(test.result.errorMessage, /gave back no out\/ directory/);
    assert.ok(!test.result.artifacts.some((a: any) => a.name !== 'console.log' && a.kind !== 'LOG'), JSON.stringify(test.result.artifacts));
    // the pool goes on with a fresh VM
    const next = await waitPlan(await submit([{ name: 'after', type: 'UNIT', requirements: QEMU, script: 'echo fine' }]));
    assert.equal(next.tests.nodes[0].status, 'PASSED', JSON.stringify(next.tests.nodes[0]));
    assert.equal(next.tests.nodes[0].result.stdout, 'fine\n');
  });

  it('a VM killed from the host during a test: UNHEALTHY, replaced, the test retried and PASSED', async (t) => {
    if (skip) return t.skip(skip);
    const planId = await submit([{ name: 'victim', type: 'UNIT', requirements: QEMU, maxRetries: 2, script: 'echo attempt; sleep 6; echo survived' }]);
    let envId: string | null = null;
    for (let i = 0; i < 1200 && !envId; i++) {
      const { plan } = await gqlOk(url, PLAN, { id: planId });
      const v = plan.tests.nodes[0];
      if (v.status === 'RUNNING' && v.environment) envId = v.environment.id;
      else await sleep(100);
    }
    assert.ok(envId, 'the test started');
    await sleep(1000);
    // the VM's QEMU: its job dir (shared over 9p) is `<env id>/vm-<n>/job`; the higher n is the spare
    // VM booted beside it for the next test
    const vms = execFileSync('pgrep', ['-af', `qemu-system-x86_64.*${envId}/vm-[0-9]+/job`], { encoding: 'utf8' })
      .trim().split('\n').map((l) => ({ pid: Number(l.split(' ')[0]), n: Number(/\/vm-(\d+)\/job/.exec(l)![1]) }))
      .sort((a, b) => a.n - b.n);
    assert.ok(vms.length >= 1 && vms.length <= 2, `the VM and its spare for ${envId}: ${JSON.stringify(vms)}`);
    process.kill(vms[0].pid, 'SIGKILL');

    const plan = await waitPlan(planId);
    const victim = plan.tests.nodes[0];
    assert.equal(victim.status, 'PASSED', JSON.stringify(victim));
    assert.equal(victim.attempts, 2, 'retried once');
    assert.equal(victim.result.stdout, 'attempt\nsurvived\n');
    assert.notEqual(victim.environment.id, envId, 'on the replacement VM');
    const envs = (await gqlOk(url, `{ environments(pool: "vm") { id status } }`)).environments;
    const killed = envs.find((e: any) => e.id === envId);
    assert.ok(!killed || ['UNHEALTHY', 'RETIRED'].includes(killed.status), `the killed VM's environment: ${JSON.stringify(envs)}`);
  });
});
