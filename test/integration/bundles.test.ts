// Bundles and files as a user sees them: a project uploaded over HTTP (POST /bundles) and used by a
// plan whose tests run its own script on its data in real sandboxes; one test's change to a bundle file
// invisible to the next; the plan's and the tests' files over the bundle; every hostile archive refused
// with its line, nothing stored and nothing made outside the store.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gql, gqlOk } from '../helpers/gql';
import { startTestRedis, type TestRedis } from '../helpers/redis';
import { makeTempDir, type TempDir } from '../helpers/sandbox-env';
import { waitForPlan } from '../helpers/plans';
import { startTestServer, type TestServer } from '../helpers/server';
import { file, hostileArchives, tarOf } from '../helpers/tar-archives';

const POOLS = JSON.stringify([
  // one environment: the tests of a plan run one after the other in it, in submission order
  { name: 'solo', kind: 'CONTAINER', cpus: 1, memoryMb: 256, image: 'debian-bookworm', capacity: 1, pids: 64, diskMb: 64, testTypes: ['UNIT'] },
  { name: 'tiny-disk', kind: 'CONTAINER', cpus: 1, memoryMb: 256, image: 'debian-bookworm', capacity: 1, pids: 64, diskMb: 16, tags: ['tiny'], testTypes: ['UNIT'] },
]);
const SUBMIT = `mutation($input: SubmitPlanInput!) { submitPlan(input: $input) { id bundle } }`;
const PLAN = `query($id: ID!) { plan(id: $id) { id status bundle counts { running queued total }
  tests(first: 100) { nodes { name status result { exitCode stdout stderr errorMessage } } } } }`;

interface Upload {
  status: number;
  body: any;
}

async function upload(url: string, body: Buffer, headers: Record<string, string> = {}): Promise<Upload> {
  const res = await fetch(`${url}/bundles`, { method: 'POST', headers: { 'content-type': 'application/octet-stream', ...headers }, body });
  return { status: res.status, body: await res.json() };
}

describe('bundles and files', () => {
  let redis: TestRedis;
  let server: TestServer;
  let url: string;
  let tmp: TempDir;
  let bundleDir: string;

  before(async () => {
    redis = await startTestRedis();
    server = await startTestServer({
      redisUrl: redis.url,
      worker: true,
      env: { POOLS, MAX_BUNDLE_FILES: '50', MAX_BUNDLE_UNPACKED_BYTES: String(1024 * 1024), MAX_BUNDLE_BYTES: String(4 * 1024 * 1024) },
    });
    url = server.url;
    bundleDir = path.join(server.dataDir, 'bundles');
    tmp = makeTempDir('orch-bundles-it-');
  });
  after(async () => {
    await server?.stop();
    await redis?.stop();
    tmp?.cleanup();
  });

  const waitPlan = (id: string) => waitForPlan(url, PLAN, id);
  const byName = (plan: any) => Object.fromEntries(plan.tests.nodes.map((t: any) => [t.name, t.result]));
  const planCount = async () => Number((await server.core.db.prisma.executionPlan.count()));

  /** A small project: its own test script, a library, data; packed by GNU tar as a CI job would. */
  function project(): Buffer {
    return projectWithSize().archive;
  }
  function projectWithSize(): { archive: Buffer; bytes: number } {
    const src = path.join(tmp.path, `project-${randomUUID().slice(0, 6)}`);
    mkdirSync(path.join(src, 'tests'), { recursive: true });
    mkdirSync(path.join(src, 'data'));
    writeFileSync(path.join(src, 'lib.sh'), 'add() { echo $(( $1 + $2 )); }\n');
    writeFileSync(
      path.join(src, 'tests/run.sh'),
      '#!/bin/sh\nset -e\ncd "$(dirname "$0")/.."\n. ./lib.sh\ncase "$1" in\n  sum) add $(cat data/a.txt) $(cat data/b.txt) ;;\n  lines) wc -l < data/table.csv ;;\n  *) echo "unknown suite $1" >&2; exit 2 ;;\nesac\n',
    );
    chmodSync(path.join(src, 'tests/run.sh'), 0o755);
    writeFileSync(path.join(src, 'data/a.txt'), '40\n');
    writeFileSync(path.join(src, 'data/b.txt'), '2\n');
    writeFileSync(path.join(src, 'data/table.csv'), 'id,name\n1,a\n2,b\n');
    writeFileSync(path.join(src, 'config.txt'), 'from the bundle\n');
    const bytes = ['lib.sh', 'tests/run.sh', 'data/a.txt', 'data/b.txt', 'data/table.csv', 'config.txt'].reduce((n, f) => n + statSync(path.join(src, f)).size, 0);
    return { archive: execFileSync('tar', ['-C', src, '-czf', '-', '.']), bytes };
  }

  it('a project uploaded over HTTP: its own script runs in several tests of a plan, on its data', async () => {
    const { archive, bytes } = projectWithSize();
    const first = await upload(url, archive, { 'content-type': 'application/gzip' });
    assert.equal(first.status, 201, JSON.stringify(first.body));
    assert.deepEqual(first.body, { id: `sha256:${createHash('sha256').update(archive).digest('hex')}`, sizeBytes: bytes, files: 6 });
    const again = await upload(url, archive);
    assert.deepEqual(again, first, 'the same bytes: the same id');
    assert.equal(readdirSync(bundleDir).filter((n) => n !== 'tmp').length, 1, 'stored once');

    const { submitPlan } = await gqlOk(url, SUBMIT, {
      input: {
        name: 'project',
        bundle: first.body.id,
        tests: [
          { name: 'sum', type: 'UNIT', script: './tests/run.sh sum' },
          { name: 'lines', type: 'UNIT', script: 'tests/run.sh lines' },
          { name: 'unknown', type: 'UNIT', script: './tests/run.sh nope' },
        ],
      },
    });
    assert.equal(submitPlan.bundle, first.body.id);
    const plan = await waitPlan(submitPlan.id);
    assert.equal(plan.bundle, first.body.id);
    const r = byName(plan);
    assert.deepEqual([r.sum.exitCode, r.sum.stdout, r.sum.stderr], [0, '42\n', '']);
    assert.deepEqual([r.lines.exitCode, r.lines.stdout], [0, '3\n']);
    assert.deepEqual([r.unknown.exitCode, r.unknown.stderr], [2, 'unknown suite nope\n']);
  });

  it("one test's change to a bundle file is invisible to the next test, and to the bundle", async () => {
    const archive = project();
    const { body } = await upload(url, archive);
    const tree = path.join(bundleDir, body.id.slice('sha256:'.length), 'tree');
    const before = readFileSync(path.join(tree, 'data/a.txt'), 'utf8');
    const { submitPlan } = await gqlOk(url, SUBMIT, {
      input: {
        name: 'isolation',
        bundle: body.id,
        tests: [
          { name: '1-changes', type: 'UNIT', script: 'echo 1000 > data/a.txt && rm lib.sh && echo left-behind > new.txt && ./tests/run.sh sum; echo "$(id -un) $(stat -c %U data/a.txt)"' },
          { name: '2-sees-the-bundle', type: 'UNIT', script: 'ls new.txt 2>&1; cat data/a.txt; ./tests/run.sh sum' },
        ],
      },
    });
    const r = byName(await waitPlan(submitPlan.id));
    assert.equal(r['1-changes'].stderr, './tests/run.sh: 4: .: cannot open ./lib.sh: No such file\n');
    assert.equal(r['1-changes'].stdout, 'nobody nobody\n', "the test's own user owns the bundle's files");
    assert.equal(r['2-sees-the-bundle'].stdout, 'ls: cannot access \'new.txt\': No such file or directory\n40\n42\n');
    assert.equal(readFileSync(path.join(tree, 'data/a.txt'), 'utf8'), before);
  });

  it("the plan's files and a test's own files over the bundle, the later winning", async () => {
    const { body } = await upload(url, project());
    const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');
    const { submitPlan } = await gqlOk(url, SUBMIT, {
      input: {
        name: 'files',
        bundle: body.id,
        files: [
          { path: 'config.txt', content: 'from the plan\n' },
          { path: 'data/b.txt', content: '8\n' },
          { path: 'bin/tool', content: b64('#!/bin/sh\necho tool ran\n'), encoding: 'base64', executable: true },
        ],
        tests: [
          { name: 'plan-files', type: 'UNIT', script: 'cat config.txt; ./tests/run.sh sum; bin/tool' },
          {
            name: 'own-files',
            type: 'UNIT',
            script: 'cat config.txt; ./tests/run.sh sum; od -An -tx1 blob.bin; stat -c %a bin/tool',
            files: [
              { path: 'config.txt', content: 'from the test\n' },
              { path: 'data/a.txt', content: '100\n' },
              { path: 'blob.bin', content: b64(Buffer.from([0, 1, 254, 255])), encoding: 'base64' },
            ],
          },
        ],
      },
    });
    const r = byName(await waitPlan(submitPlan.id));
    assert.equal(r['plan-files'].stdout, 'from the plan\n48\ntool ran\n');
    assert.equal(r['own-files'].stdout, 'from the test\n108\n 00 01 fe ff\n755\n');

    // files without a bundle
    const alone = await gqlOk(url, SUBMIT, {
      input: { name: 'no-bundle', files: [{ path: 'a/b/c.txt', content: 'deep' }], tests: [{ name: 't', type: 'UNIT', script: 'cat a/b/c.txt', files: [{ path: 'x', content: 'y' }] }] },
    });
    assert.equal(byName(await waitPlan(alone.submitPlan.id)).t.stdout, 'deep');
  });

  it('refuses an unknown bundle, a malformed id and bad files with BAD_USER_INPUT, storing nothing', async () => {
    const plans = await planCount();
    const cases: [object, RegExp][] = [
      [{ bundle: `sha256:${'0'.repeat(64)}` }, /^invalid plan: bundle "sha256:0{64}" was not uploaded \(POST \/bundles answers the id to give here\)$/],
      [{ bundle: 'latest' }, /^invalid plan: bundle must be the id of an uploaded bundle, "sha256:" and 64 hex digits as POST \/bundles answers \(got "latest"\)$/],
      [{ files: [{ path: '../escape', content: 'x' }] }, /^invalid plan: files\[0\]\.path must not contain "\.\."$/],
      [{ files: [{ path: '/etc/passwd', content: 'x' }] }, /^invalid plan: files\[0\]\.path must be relative to the working directory, not start with "\/"$/],
      [{ files: [{ path: 'a', content: 'not base64!', encoding: 'base64' }] }, /^invalid plan: files\[0\]\.content is not valid base64/],
      [{ files: [{ path: 'a', content: 'x', encoding: 'latin1' }] }, /^invalid plan: files\[0\]\.encoding must be "utf8" or "base64" \(got "latin1"\)$/],
      [{ files: [{ path: 'a', content: 'x' }, { path: 'a', content: 'y' }] }, /^invalid plan: files\[1\]\.path "a" is given twice \(also files\[0\]\)$/],
      [{ tests: [{ name: 'big', type: 'UNIT', script: 'true', files: [{ path: 'big', content: 'x'.repeat(1024 * 1024 + 1) }] }] }, /^invalid plan: tests\[0\]\.files\[0\]\.content \("big"\) is 1048577 bytes, more than 1048576$/],
    ];
    for (const [extra, message] of cases) {
      const r = await gql(url, SUBMIT, { input: { name: 'bad', tests: [{ name: 't', type: 'UNIT', script: 'true' }], ...extra } });
      assert.equal(r.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT', JSON.stringify(r));
      assert.match(r.errors![0].message, message);
    }
    assert.equal(await planCount(), plans, 'nothing stored');
  });

  it("refuses a test whose bundle and files do not fit its pool's disk (UNSCHEDULABLE)", async () => {
    const { body } = await upload(url, tarOf([file('half.bin', Buffer.alloc(900 * 1024, 1))]));
    const eight = Array.from({ length: 8 }, (_, i) => ({ path: `f${i}`, content: 'y'.repeat(1024 * 1024 - 1) }));
    const r = await gql(url, SUBMIT, {
      input: { name: 'too-big', bundle: body.id, files: eight, tests: [{ name: 'fat', type: 'UNIT', script: 'true', requirements: { tags: ['tiny'] }, files: eight }] },
    });
    assert.equal(r.errors?.[0]?.extensions?.code, 'UNSCHEDULABLE', JSON.stringify(r).slice(0, 500));
    assert.match(r.errors![0].message, /^tests\[0\] "fat": its bundle and files \(16\.9 MiB\) do not fit the 16 MiB disk of pool "tiny-disk"$/);
  });

  it('refuses every hostile archive with its line: nothing stored, nothing made outside the store', async () => {
    const canary = path.join(tmp.path, 'canary');
    mkdirSync(canary);
    const stored = readdirSync(bundleDir).sort();
    const rows = await server.core.db.prisma.bundle.count();
    for (const h of hostileArchives(canary)) {
      const r = await upload(url, h.body);
      assert.equal(r.status, h.status, `${h.name}: ${JSON.stringify(r.body)}`);
      assert.deepEqual(Object.keys(r.body), ['error'], h.name);
      assert.match(r.body.error, h.error, h.name);
      assert.deepEqual(readdirSync(bundleDir).sort(), stored, `${h.name}: nothing stored`);
      assert.deepEqual(readdirSync(path.join(bundleDir, 'tmp')), [], `${h.name}: nothing left half-written`);
      assert.deepEqual(readdirSync(canary), [], `${h.name}: nothing made outside the store`);
    }
    assert.equal(await server.core.db.prisma.bundle.count(), rows, 'no bundle recorded');

    // and what only HTTP can get wrong
    const good = tarOf([file('a.txt')]);
    const wrongType = await upload(url, good, { 'content-type': 'text/plain' });
    assert.deepEqual(wrongType, { status: 415, body: { error: 'Content-Type "text/plain" is not accepted: send the archive as application/x-tar, application/gzip, application/zstd or application/octet-stream' } });
    const encoded = await upload(url, good, { 'content-encoding': 'br' });
    assert.equal(encoded.status, 415);
    const huge = await fetch(`${url}/bundles`, { method: 'POST', headers: { 'content-type': 'application/x-tar', 'content-length': String(5 * 1024 * 1024) }, body: Buffer.alloc(5 * 1024 * 1024) });
    assert.equal(huge.status, 413);
    assert.deepEqual(await huge.json(), { error: 'the archive is 5 MiB, more than 4 MiB (MAX_BUNDLE_BYTES)' });
    const foreign = await upload(url, good, { origin: 'https://evil.example' });
    assert.equal(foreign.status, 403, 'a page of another site cannot upload');
    assert.deepEqual(readdirSync(bundleDir).sort(), stored);
  });
});
