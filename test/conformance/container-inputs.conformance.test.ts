// The container driver's working directory inputs (RunSpec.inputs): every run starts in /work holding
// the bundle, then the files over it, owned by the test's user, writable and private; what a run changes
// (a bundle file edited in place, one deleted, one added) is gone for the next run and never reaches the
// bundle itself; the bundle counts against the disk; the reset and destroy leave no mount behind.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { lstatSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { ContainerDriver, type ContainerHandle } from '../../src/environments/container/driver.js';
import { checkImage } from '../../src/environments/container/image.js';
import { mountsBelow } from '../../src/environments/container/work-fs.js';
import type { EnvironmentShape, RunFile, RunSpec } from '../../src/environments/driver.js';
import { BundleStore } from '../../src/infra/bundle/bundle-store.js';
import { TEST_IMAGE, makeTempDir, silentLogger, testImageDir, type TempDir } from '../helpers/sandbox-env.js';
import { dir, file, symlink, tarOf } from '../helpers/tar-archives.js';

const asRoot = process.getuid?.() === 0;
const shape: EnvironmentShape = { pool: 'inputs', kind: 'CONTAINER', arch: 'x86_64', cpus: 1, memoryMb: 256, image: TEST_IMAGE, pids: 64, diskMb: 24 };
const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');

/** Every file below `root` with its sha256 (the bundle store's tree must never change). */
function digestTree(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const name of readdirSync(path.join(root, rel)).sort()) {
      const p = rel ? `${rel}/${name}` : name;
      const st = lstatSync(path.join(root, p));
      if (st.isDirectory()) walk(p);
      else out[p] = st.isFile() ? createHash('sha256').update(readFileSync(path.join(root, p))).digest('hex') : 'link';
      out[`${p}:mode`] = (st.mode & 0o7777).toString(8);
    }
  };
  walk('');
  return out;
}

describe('ContainerDriver: the working directory starts with the bundle and the files', () => {
  let skip: string | null = null;
  let tmp: TempDir;
  let state: TempDir;
  let driver: ContainerDriver;
  let env: ContainerHandle;
  let bundleDir: string;
  let bigBundleDir: string;

  before(async () => {
    if (!(await checkImage(testImageDir(), TEST_IMAGE)).ok) skip = `image ${TEST_IMAGE} missing in ${testImageDir()}`;
    tmp = makeTempDir('orch-inputs-');
    state = makeTempDir('orch-inputs-state-', { traversable: true });
    if (skip) return;
    const store = new BundleStore(path.join(tmp.path, 'bundles'));
    const limits = { maxArchiveBytes: 64 << 20, maxUnpackedBytes: 64 << 20, maxEntries: 1000 };
    const small = tarOf([
      file('run-tests.sh', '#!/bin/sh\necho "tests of $(cat data/name.txt)"\n', 0o755),
      dir('data/', 0o750),
      file('data/name.txt', 'the project\n'),
      file('data/config.ini', 'mode=bundle\n', 0o600),
      symlink('name', 'data/name.txt'),
      dir('src/'),
      file('src/lib.c', 'int x;\n'),
    ]);
    bundleDir = store.treeOf((await store.put(Readable.from([small]), limits)).id);
    // 12 MiB: on a 24 MiB disk, half of it is the bundle's
    const big = tarOf([file('big.bin', Buffer.alloc(12 * 1024 * 1024, 1))]);
    bigBundleDir = store.treeOf((await store.put(Readable.from([big]), limits)).id);
    driver = new ContainerDriver({ imageDir: testImageDir(), logger: silentLogger, stateDir: state.path, cgroupParent: `test-orchestrator-inputs-${process.pid}` });
    await driver.preflight(shape);
    env = await driver.provision(`inputs-${process.pid}`, shape);
  });
  after(async () => {
    if (driver) await driver.close();
    assert.deepEqual(await mountsBelow(state.path), [], 'no mount left below the state dir');
    state.cleanup();
    tmp.cleanup();
  });

  let runs = 0;
  const run = async (script: string, inputs?: RunSpec['inputs'], extra: Partial<RunSpec> = {}) => {
    await driver.reset(env);
    return driver.run(env, {
      ...extra,
      testId: 'inputs',
      attempt: 1,
      script,
      env: {},
      timeoutMs: 60_000,
      services: [],
      artifactPaths: [],
      artifactDir: path.join(tmp.path, `art-${++runs}`),
      maxOutputBytes: 1 << 20,
      inputs,
    });
  };

  it("runs the bundle's own script on its data, in /work owned by the test's user, private and writable", async (t) => {
    if (skip) return t.skip(skip);
    const o = await run('./run-tests.sh && cat name && stat -c "%U %a %n" /work /work/data /work/data/config.ini /work/run-tests.sh && touch /work/new && echo writable', { bundleDir, files: [] });
    assert.equal(o.stderr, '');
    assert.equal(o.exitCode, 0);
    assert.equal(o.stdout, 'tests of the project\nthe project\nnobody 700 /work\nnobody 750 /work/data\nnobody 600 /work/data/config.ini\nnobody 755 /work/run-tests.sh\nwritable\n');
  });

  it("one run's changes to the bundle (edited in place, deleted, added, chmod) are not in the next, nor in the bundle", async (t) => {
    if (skip) return t.skip(skip);
    const before = digestTree(bundleDir);
    const first = await run('echo changed >> data/name.txt && rm src/lib.c && echo new > src/new.c && chmod 700 run-tests.sh && cat data/name.txt && ls src', { bundleDir, files: [] });
    assert.equal(first.stdout, 'the project\nchanged\nnew.c\n');
    const second = await run('cat data/name.txt; ls src; stat -c %a run-tests.sh', { bundleDir, files: [] });
    assert.equal(second.stdout, 'the project\nlib.c\n755\n');
    assert.deepEqual(digestTree(bundleDir), before, "the bundle's files are as uploaded");
    const none = await run('ls -A /work');
    assert.equal(none.stdout, '.test-script\n', 'a run without a bundle starts empty again');
  });

  it('writes the files over the bundle: a file replaces one, a directory merges, a file hides a directory', async (t) => {
    if (skip) return t.skip(skip);
    const files: RunFile[] = [
      { path: 'data/name.txt', base64: b64('from the files\n'), executable: false },
      { path: 'data/extra/deep.txt', base64: b64('deep\n'), executable: false },
      { path: 'src', base64: b64('now a file\n'), executable: false },
      { path: 'tool.sh', base64: b64('#!/bin/sh\necho tool\n'), executable: true },
      { path: 'bin.dat', base64: b64(Buffer.from([0, 255, 10, 13])), executable: false },
    ];
    const o = await run('./run-tests.sh; cat data/config.ini data/extra/deep.txt src; ./tool.sh; od -An -tx1 bin.dat; stat -c "%U %a" data data/extra tool.sh', { bundleDir, files });
    assert.equal(o.stderr, '');
    assert.equal(o.stdout, 'tests of from the files\nmode=bundle\ndeep\nnow a file\ntool\n 00 ff 0a 0d\nnobody 750\nnobody 755\nnobody 755\n');
    // and without a bundle
    const alone = await run('cat data/extra/deep.txt; ls -A', { files });
    assert.equal(alone.stdout, 'deep\n.test-script\nbin.dat\ndata\nsrc\ntool.sh\n');
  });

  it("counts the bundle against the disk: what the test may write is the disk less the bundle's size", async (t) => {
    if (skip) return t.skip(skip);
    const write = 'dd if=/dev/zero of=out bs=1M count=14 2>/dev/null && echo wrote 14 MiB || echo refused';
    assert.equal((await run(write)).stdout, 'wrote 14 MiB\n', 'without a bundle 14 MiB fit a 24 MiB disk');
    const o = await run(`cmp -s big.bin big.bin && ${write}`, { bundleDir: bigBundleDir, files: [] });
    assert.equal(o.stdout, 'refused\n', 'with a 12 MiB bundle they do not');
    assert.equal(o.diskFull, true);
  });

  it('works the same for a hardened run (read-only but /work) and for a run with services', async (t) => {
    if (skip) return t.skip(skip);
    const hardened = await run('./run-tests.sh && echo x >> data/name.txt && echo "$TMPDIR" && touch /etc/x 2>/dev/null || echo "/etc read-only"', { bundleDir, files: [] }, { isolation: 'hardened' });
    assert.equal(hardened.stdout, 'tests of the project\n/work/.tmp\n/etc read-only\n', hardened.stderr);
    const services = await run('./run-tests.sh', { bundleDir, files: [] }, { services: [{ name: 'reader', command: 'cat data/config.ini > /run/orchestrator/seen; sleep 30', readyCheck: 'test -s /run/orchestrator/seen' }] });
    assert.equal(services.stdout, 'tests of the project\n', services.stderr);
  });

  it('a bundle that is not on this host is an environment fault naming BUNDLE_DIR', async (t) => {
    if (skip) return t.skip(skip);
    await assert.rejects(run('true', { bundleDir: path.join(tmp.path, 'nowhere'), files: [] }), /InfrastructureError: the bundle .*nowhere is not on this host .*BUNDLE_DIR on a shared filesystem/);
    assert.equal((await run('echo still fine')).stdout, 'still fine\n');
  });
});
