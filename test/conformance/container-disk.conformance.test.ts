// The container driver's disk limits (issue 6, items 9 and 10): a test that writes past its pool's
// diskMb gets ENOSPC and the host holds no more than the limit; artifact collection is capped
// (files, bytes, a file's allocated size) and says what it left out; a tree deeper than PATH_MAX
// is cleaned by reset, destroy and the start-up sweep; a removal that fails is an environment
// fault. Small limits, so it runs fast.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, readdirSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ContainerDriver, type ContainerHandle } from '../../src/environments/container/driver.js';
import { checkImage } from '../../src/environments/container/image.js';
import { createWorkFs, mountsBelow } from '../../src/environments/container/work-fs.js';
import { InfrastructureError, type EnvironmentShape, type RunSpec } from '../../src/environments/driver.js';
import { classifyRun, withArtifactNotes } from '../../src/domain/outcome.js';
import { DirectoryArtifactStore } from '../../src/infra/artifact-store.js';
import { TEST_IMAGE, makeTempDir, silentLogger, testImageDir, type TempDir } from '../helpers/sandbox-env.js';

const DISK_MB = 32;
const shape: EnvironmentShape = { pool: 'disk', kind: 'CONTAINER', arch: 'x86_64', cpus: 1, memoryMb: 256, image: TEST_IMAGE, pids: 64, diskMb: DISK_MB };
const asRoot = process.getuid?.() === 0;

/** Bytes a path holds on the host's disk (allocated blocks, not apparent size), whole tree. */
function hostBytes(p: string): number {
  const r = spawnSync('du', ['-s', '-B1', '-x', p], { encoding: 'utf8' });
  return Number(r.stdout.split('\t')[0]);
}

/** A perl one-liner (perl-base is in every Debian image) making a tree deeper than PATH_MAX here. */
const DEEP_TREE = `perl -e 'for (1..60) { mkdir "d" x 100 or die "mkdir: $!"; chdir "d" x 100 or die "chdir: $!" } open(F, ">", "leaf") or die; print F "x"; close F; print "deep ok\\n"'`;

describe('ContainerDriver disk limits', () => {
  let skip: string | null = null;
  let tmp: TempDir;
  let state: TempDir;
  let driver: ContainerDriver;
  let env: ContainerHandle;
  const errors: string[] = [];
  const logger = { info() {}, warn() {}, error: (o: object, m: string) => errors.push(`${m} ${JSON.stringify(o)}`) };

  before(async () => {
    if (!asRoot) skip = 'disk limits need root (loop mounts)';
    else if (!(await checkImage(testImageDir(), TEST_IMAGE)).ok) skip = `image ${TEST_IMAGE} missing in ${testImageDir()}`;
    tmp = makeTempDir('orch-disk-');
    state = makeTempDir('orch-disk-state-', { traversable: true });
    if (skip) return;
    driver = new ContainerDriver({ imageDir: testImageDir(), logger, stateDir: state.path, cgroupParent: `test-orchestrator-disk-${process.pid}` });
    await driver.preflight(shape);
    env = await driver.provision(`disk-${process.pid}`, shape);
  });
  after(async () => {
    if (driver) await driver.close();
    assert.deepEqual(await mountsBelow(state.path), [], 'no mount left below the state dir');
    state.cleanup();
    tmp.cleanup();
  });

  let runs = 0;
  const spec = (over: Partial<RunSpec> & { script: string }): RunSpec => ({
    testId: 'disk',
    attempt: 1,
    env: {},
    timeoutMs: 60_000,
    services: [],
    artifactPaths: [],
    artifactDir: path.join(tmp.path, `art-${++runs}`),
    maxOutputBytes: 65536,
    ...over,
  });

  it('a write past diskMb fails with ENOSPC inside, the result says the disk limit was hit, and the host holds no more than the limit', async (t) => {
    if (skip) return t.skip(skip);
    await driver.reset(env);
    const o = await driver.run(env, spec({ script: 'dd if=/dev/zero of=big bs=1M count=200 && echo wrote-all; dd if=/dev/zero of=/run/orchestrator/big bs=1M count=200 2>&1 | tail -1 >&2; exit 1' }));
    assert.doesNotMatch(o.stdout, /wrote-all/);
    assert.match(o.stderr, /No space left on device/);
    assert.equal(o.diskFull, true);
    const held = hostBytes(env.stateDir);
    assert.ok(held <= (DISK_MB + 4) * 1024 * 1024, `the host holds ${held} bytes for an environment of ${DISK_MB} MB`);
    const { status, errorMessage } = classifyRun({ ...o, timeoutSeconds: 60, memoryMb: 256, diskMb: DISK_MB });
    assert.equal(status, 'FAILED');
    assert.match(errorMessage ?? '', new RegExp(`disk limit of ${DISK_MB} MB \\(No space left on device\\)`));
    // reset gives the next test an empty disk
    await driver.reset(env);
    const next = await driver.run(env, spec({ script: 'ls -A /work | grep -v "^.test-script$"; df -k /work | tail -1' }));
    assert.equal(next.exitCode, 0, next.stderr);
    assert.equal(next.diskFull, false);
    assert.doesNotMatch(next.stdout, /big|lost\+found/);
  });

  /** Bytes a file holds on disk (st_blocks * 512). */
  const allocated = (p: string) => statSync(p).blocks * 512;
  const sha256Of = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

  it('a sparse file is kept whole and sparse, in the run artifacts and in the artifact store', async (t) => {
    if (skip) return t.skip(skip);
    await driver.reset(env);
    // 64 MiB logical, 1 MiB of data in four pieces (start, middle, end), holes between.
    const s = spec({
      script: [
        'truncate -s 64M sparse.bin',
        'head -c 262144 /dev/urandom | dd of=sparse.bin conv=notrunc status=none',
        'head -c 524288 /dev/urandom | dd of=sparse.bin bs=1M seek=20 conv=notrunc status=none',
        'head -c 262144 /dev/urandom | dd of=sparse.bin bs=262144 seek=255 conv=notrunc status=none',
        'sha256sum sparse.bin | cut -d" " -f1',
      ].join(' && '),
      artifactPaths: ['sparse.bin'],
    });
    const o = await driver.run(env, s);
    assert.equal(o.exitCode, 0, o.stderr);
    const inside = o.stdout.trim();
    const f = o.files.find((x) => x.name === 'sparse.bin');
    assert.ok(f, JSON.stringify(o.files));
    assert.equal(f.sizeBytes, 64 * 1024 * 1024, 'its whole logical size');
    assert.deepEqual(o.artifactNotes ?? [], [], 'nothing cut');
    assert.equal(statSync(f.path).size, 64 * 1024 * 1024);
    assert.equal(sha256Of(f.path), inside, 'the same bytes');
    assert.ok(allocated(f.path) <= 1.25 * 1024 * 1024, `the copy holds ${allocated(f.path)} bytes on disk`);

    const store = new DirectoryArtifactStore(path.join(tmp.path, 'store'));
    const put = await store.putFile(f.path);
    assert.equal(put.sha256, inside, 'hashed over the logical content');
    const stored = store.pathOf(put.key);
    assert.equal(statSync(stored).size, 64 * 1024 * 1024);
    assert.equal(sha256Of(stored), inside);
    assert.ok(allocated(stored) <= 1.25 * 1024 * 1024, `the store holds ${allocated(stored)} bytes on disk`);
    // stored again (dedup): same key, still one sparse file, no temporary left
    assert.equal((await store.putFile(f.path)).key, put.key);
    assert.deepEqual(readdirSync(path.join(tmp.path, 'store', 'tmp')), []);
  });

  it('a real core dump is stored whole at its full logical size', async (t) => {
    if (skip) return t.skip(skip);
    await driver.reset(env);
    // dd holds a 64 MiB buffer it never touches (blocked reading a FIFO) when it gets SIGSEGV: the
    // kernel writes those pages as holes.
    const s = spec({
      script: [
        'ulimit -c unlimited',
        'mkfifo pipe',
        'dd if=pipe bs=64M of=/dev/null status=none & dd=$!',
        'exec 3>pipe',
        'sleep 0.5',
        'kill -SEGV $dd',
        'wait $dd',
        'exec 3>&-',
        'for c in core*; do stat -c "%n %s %b" "$c"; sha256sum "$c" | cut -d" " -f1; done',
      ].join('\n'),
    });
    const o = await driver.run(env, s);
    const [line, sum] = o.stdout.trim().split('\n');
    const m = /^(core(?:\.\d+)?) (\d+) (\d+)$/.exec(line ?? '');
    assert.ok(m, `no core dump in the work dir: ${o.stdout} ${o.stderr}`);
    const [, name, size, blocks] = m;
    assert.ok(Number(size) > 64 * 1024 * 1024, `a core of dd's 64 MiB buffer: ${size}`);
    assert.ok(Number(blocks) * 512 < Number(size) / 4, `the kernel wrote it sparse: ${blocks} blocks of ${size}`);
    const core = o.files.find((x) => x.kind === 'CORE_DUMP');
    assert.ok(core, JSON.stringify(o.files));
    assert.equal(core.name, name);
    assert.equal(core.sizeBytes, Number(size), 'not cut');
    assert.equal(sha256Of(core.path), sum);
    const store = new DirectoryArtifactStore(path.join(tmp.path, 'store-core'));
    const put = await store.putFile(core.path);
    assert.equal(put.sha256, sum);
    assert.equal(statSync(store.pathOf(put.key)).size, Number(size));
    assert.ok(allocated(store.pathOf(put.key)) <= Number(blocks) * 512 + 64 * 1024, 'the store holds no more than the core did');
  });

  it('a sparse 1 TiB artifact is never read in full: cut at the byte limit, still sparse, and the result says so', async (t) => {
    if (skip) return t.skip(skip);
    await driver.reset(env);
    const s = spec({
      script: 'truncate -s 1T sparse.bin && echo hello > small.txt && truncate -s 1T core',
      artifactPaths: ['sparse.bin', 'small.txt'],
      artifactLimits: { maxBytes: 32 * 1024 * 1024, maxFiles: 100 },
    });
    const o = await driver.run(env, s);
    assert.equal(o.exitCode, 0, o.stderr);
    const byName = new Map(o.files.map((f) => [f.name, f]));
    assert.equal(byName.get('small.txt')?.sizeBytes, 6);
    assert.equal(byName.get('sparse.bin')?.sizeBytes, 32 * 1024 * 1024 - 6, JSON.stringify(o.files));
    assert.equal(byName.has('core'), false, 'a core dump that does not fit is left out, not cut');
    assert.ok(hostBytes(s.artifactDir) < 1024 * 1024, 'the artifact dir holds less than 1 MiB');
    assert.ok(o.artifactNotes?.some((n) => /^sparse\.bin cut to 32 MiB of 1\.0 TiB \(the artifact byte limit of 32 MiB per test was reached\)$/.test(n)), JSON.stringify(o.artifactNotes));
    assert.ok(o.artifactNotes?.some((n) => /^core left out: it is 1\.0 TiB, more than the .* left of the artifact byte limit$/.test(n)), JSON.stringify(o.artifactNotes));
    assert.match(withArtifactNotes(null, o.artifactNotes) ?? '', /^artifacts: /);
  });

  it('caps the number of files and the bytes collected per test, and says what was left out', async (t) => {
    if (skip) return t.skip(skip);
    await driver.reset(env);
    const many = spec({
      script: 'mkdir out && for i in $(seq 1 50); do echo $i > out/f$i; done; ln -s /etc/shadow out/link; mkfifo out/fifo',
      artifactPaths: ['out'],
      artifactLimits: { maxBytes: 1 << 20, maxFiles: 5 },
    });
    const o = await driver.run(env, many);
    assert.equal(o.exitCode, 0, o.stderr);
    // the complete logs have a limit of their own: not counted in the test's files
    assert.equal(o.files.filter((f) => f.kind === 'FILE').length, 5);
    assert.deepEqual(o.files.filter((f) => f.kind === 'LOG').map((f) => f.name), ['stdout.log', 'stderr.log']);
    assert.equal(readdirSync(path.join(many.artifactDir, 'out')).length, 5);
    assert.ok(o.artifactNotes?.includes('45 more matching files left out (limit 5 files per test)'), JSON.stringify(o.artifactNotes));

    await driver.reset(env);
    const big = spec({
      script: 'for i in 1 2 3 4; do head -c 3000000 /dev/urandom > b$i; done',
      artifactPaths: ['b*'],
      artifactLimits: { maxBytes: 5_000_000, maxFiles: 100 },
    });
    const b = await driver.run(env, big);
    assert.equal(b.exitCode, 0, b.stderr);
    const total = b.files.filter((f) => f.kind === 'FILE').reduce((n, f) => n + f.sizeBytes, 0);
    assert.equal(total, 5_000_000);
    assert.ok(hostBytes(big.artifactDir) <= 5_000_000 + 64 * 1024, 'no more than the byte cap on the host');
    assert.ok(b.artifactNotes?.some((n) => /^b2 cut to 1\.9 MiB of 2\.9 MiB \(the artifact byte limit of 4\.8 MiB per test was reached\)$/.test(n)), JSON.stringify(b.artifactNotes));
    assert.ok(b.artifactNotes?.includes('2 more matching files left out (limit 4.8 MiB per test reached)'), JSON.stringify(b.artifactNotes));
  });

  it('a tree deeper than PATH_MAX is cleaned by reset and destroy, and nothing is left on the host', async (t) => {
    if (skip) return t.skip(skip);
    const other = await driver.provision(`deep-${process.pid}`, shape);
    const o = await driver.run(other, spec({ script: `${DEEP_TREE}; cd /run/orchestrator && ${DEEP_TREE}`, artifactPaths: ['**'] }));
    assert.equal(o.exitCode, 0, o.stderr);
    assert.match(o.stdout, /deep ok\ndeep ok/);
    await driver.reset(other);
    assert.deepEqual(readdirSync(path.join(other.stateDir, 'work')), []);
    await driver.destroy(other);
    assert.equal(existsSync(other.stateDir), false, 'the environment dir is gone');
    assert.deepEqual((await mountsBelow(state.path)).filter((m) => m.startsWith(other.stateDir)), []);
  });

  it('a reset that cannot remove the disk is an environment fault, with an error in the log', async (t) => {
    if (skip) return t.skip(skip);
    const other = await driver.provision(`busy-${process.pid}`, shape);
    // Enough files that reset makes a new filesystem; something outside the sandbox holds the old one.
    const o = await driver.run(other, spec({ script: 'mkdir many && cd many && seq 1 400 | xargs touch' }));
    assert.equal(o.exitCode, 0, o.stderr);
    const held = openSync(path.join(other.stateDir, 'work'), 'r');
    errors.length = 0;
    try {
      await assert.rejects(driver.reset(other), (err: Error) => err instanceof InfrastructureError && /cannot reset environment .*cannot unmount/.test(err.message));
      assert.ok(errors.some((e) => /reset failed: the environment is unusable/.test(e)), errors.join('\n'));
    } finally {
      closeSync(held);
    }
    await driver.destroy(other);
    assert.equal(existsSync(other.stateDir), false);
  });

  it('the start-up sweep unmounts and removes what a dead driver left, deep trees included', async (t) => {
    if (skip) return t.skip(skip);
    const ns = /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))![1];
    const deadPid = Number(String(spawnSync('/bin/sh', ['-c', 'echo $$']).stdout).trim());
    const dead = `p${deadPid}.12345.${ns}.0000d15c`;
    const sweepBase = path.join(tmp.path, 'sweep-state');
    const envDir = path.join(sweepBase, dead, 'some-env');
    mkdirSync(envDir, { recursive: true, mode: 0o711 });
    await createWorkFs({ image: path.join(envDir, 'disk.img'), mountPoint: path.join(envDir, 'work'), sizeMb: 16, ctlMountPoint: path.join(envDir, 'run'), ctlSizeMb: 1 });
    for (const where of [path.join(envDir, 'work'), envDir]) {
      const r = spawnSync('/bin/sh', ['-c', DEEP_TREE], { cwd: where, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
    }
    writeFileSync(path.join(envDir, 'work', 'left.txt'), 'x');
    assert.equal((await mountsBelow(sweepBase)).length, 2);
    const sweeper = new ContainerDriver({ imageDir: testImageDir(), logger: silentLogger, stateDir: sweepBase, cgroupParent: `test-orchestrator-disk-${process.pid}` });
    try {
      const removed = await sweeper.sweepDeadInstances();
      assert.deepEqual(removed.stateDirs, [path.join(sweepBase, dead)]);
      assert.deepEqual(await mountsBelow(sweepBase), []);
      assert.equal(existsSync(path.join(sweepBase, dead)), false);
    } finally {
      await sweeper.close();
    }
    // and the loop device went with it
    assert.doesNotMatch(readFileSync('/proc/self/mountinfo', 'utf8'), new RegExp(dead));
  });
});
