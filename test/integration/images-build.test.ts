// Image builds for real, as root (src/images): an OCI image made by the test, imported from oci:,
// oci-archive: and docker-archive:, shows exactly its second layer's view and keeps its config Env; a
// derived image with a package imports it; an unknown package fails with apt's message and leaves
// nothing behind; a changed definition is a new version while the old one, in use, is kept; two
// concurrent builds of one image build it once; a first-layout image is taken over, not rebuilt.
//
// OCI, lock and store tests use a temp IMAGE_DIR of their own (offline, seconds). The Debian ones use
// the shared cache, whose debian-bookworm saves a debootstrap, under names of their own removed after.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DEFAULT_IMAGES, type ImageDefinition } from '../../src/config/images';
import { buildBwrapArgs } from '../../src/environments/container/bwrap-args';
import { checkImage } from '../../src/environments/container/image';
import { ImageBuildError, acquireVersion, buildImage, collectGarbage, listVersions, resolveImage, resolveVersion, type ResolvedImage } from '../../src/images';
import { makeTestOciImage, ociToolsMissing, type TestOciImage } from '../helpers/oci-image';
import { makeTempDir, silentLogger, testImageDir } from '../helpers/sandbox-env';

const asRoot = process.getuid?.() === 0;

/** Runs `command` in `image` as a test would: plain bwrap with the driver's flags, as uid 65534. */
function runIn(image: ResolvedImage, command: string[]): { code: number | null; stdout: string; stderr: string } {
  const scratch = makeTempDir('orch-img-run-', { traversable: true });
  try {
    mkdirSync(path.join(scratch.path, 'work'));
    mkdirSync(path.join(scratch.path, 'ctl'));
    const args = buildBwrapArgs({ rootfs: image.rootfs, workDir: path.join(scratch.path, 'work'), ctlDir: path.join(scratch.path, 'ctl'), env: {}, command });
    const r = spawnSync('bwrap', args, { encoding: 'utf8', timeout: 60_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  } finally {
    scratch.cleanup();
  }
}

const oci = (name: string, from: string, over: Partial<ImageDefinition> = {}): ImageDefinition => {
  const colon = from.indexOf(':');
  const kind = from.slice(0, colon) as 'oci' | 'oci-archive' | 'docker-archive';
  const [p, tag] = from.slice(colon + 1).split(':');
  const source = kind === 'docker-archive' ? { type: kind, path: p } : tag ? { type: kind, path: p, tag } : { type: kind, path: p };
  return { name, from, source, packages: [], env: {}, ...over } as ImageDefinition;
};

describe('OCI images made by the test', () => {
  let skip: string | null = asRoot ? ociToolsMissing() : 'image builds need root';
  let work: string;
  let imageDir: string;
  let img: TestOciImage;

  before(() => {
    if (skip) return;
    work = mkdtempSync(path.join(tmpdir(), 'orch-oci-'));
    chmodSync(work, 0o755); // the sandbox user must reach the image store below it
    imageDir = path.join(work, 'images');
    img = makeTestOciImage(work);
  });
  after(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('is two layers, the second adding c.txt and whiting out a.txt', (t) => {
    if (skip) return t.skip(skip);
    assert.equal(img.layers.length, 2);
    assert.ok(img.secondLayerEntries.some((e) => /(^|\/)\.wh\.a\.txt$/.test(e)), img.secondLayerEntries.join(' '));
    assert.ok(img.secondLayerEntries.some((e) => /(^|\/)c\.txt$/.test(e)));
    assert.ok(!img.secondLayerEntries.some((e) => /(^|\/)b\.txt$/.test(e)), 'b.txt is of the first layer only');
  });

  for (const kind of ['oci', 'oci-archive', 'docker-archive'] as const) {
    it(`from ${kind}: gives exactly the second layer's view, with the image's Env`, async (t) => {
      if (skip) return t.skip(skip);
      const from = kind === 'oci' ? `oci:${img.layout}:v2` : kind === 'oci-archive' ? `oci-archive:${img.ociArchive}:v2` : `docker-archive:${img.dockerArchive}`;
      const defs = [oci(`from-${kind}`, from, { env: { FROM_DEF: 'yes', FOO: kind === 'oci' ? 'overridden' : 'from-oci' } })];
      const lines: string[] = [];
      const image = await buildImage(imageDir, defs, `from-${kind}`, { logger: { ...silentLogger, info: (_o, m) => lines.push(m) } });
      assert.equal(image.built, true);
      assert.match(image.digest, /^sha256:[0-9a-f]{64}$/);
      assert.ok(lines.some((l) => l.includes('import')), lines.join('\n'));
      const top = readdirSync(image.rootfs).sort();
      assert.ok(top.includes('b.txt') && top.includes('c.txt'), top.join(' '));
      assert.ok(!top.includes('a.txt'), 'a.txt is whited out');
      assert.ok(!top.some((e) => e.startsWith('.wh.')), 'no whiteout file is left');
      for (const d of ['work', 'tmp', 'proc', 'dev', 'run']) assert.ok(statSync(path.join(image.rootfs, d)).isDirectory(), d);
      assert.equal(statSync(path.join(image.rootfs, 'tmp')).mode & 0o7777, 0o1777);
      assert.equal(statSync(path.join(image.rootfs, 'work')).mode & 0o7777, 0o755);

      const manifest = JSON.parse(readFileSync(path.join(path.dirname(image.rootfs), 'image.json'), 'utf8'));
      assert.equal(manifest.env.PATH, '/bin');
      assert.equal(manifest.env.FOO, kind === 'oci' ? 'overridden' : 'from-oci', 'the definition env wins over the image Env');
      assert.equal(manifest.env.FROM_DEF, 'yes');
      assert.deepEqual(image.env, manifest.env);
      assert.equal(manifest.digest, image.digest);
      assert.equal(manifest.from, from);
      assert.ok(manifest.sizeBytes > 500_000, `size ${manifest.sizeBytes}`);

      const r = runIn(image, ['/bin/sh', '-c', 'cat /b.txt /c.txt; ls /a.txt 2>&1; echo id=$(id -u 2>/dev/null || echo none)']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^layer one b\nlayer two c\n.*a\.txt.*No such file/s);

      const again = await buildImage(imageDir, defs, `from-${kind}`, { logger: silentLogger });
      assert.equal(again.built, false, 'up to date: not built again');
      assert.equal(again.digest, image.digest);
    });
  }

  it('is world-readable and root-owned under the orchestrator\'s umask 077, readable by the sandbox user', async (t) => {
    if (skip) return t.skip(skip);
    const old = process.umask(0o077);
    let image: ResolvedImage;
    try {
      image = await buildImage(imageDir, [oci('umask', `oci:${img.layout}:v2`)], 'umask', { logger: silentLogger });
      const release = await acquireVersion(imageDir, 'umask', image.digest, 'reader');
      release();
    } finally {
      process.umask(old);
    }
    const version = path.dirname(image.rootfs);
    for (const p of [imageDir, path.dirname(version), version, image.rootfs, `${version}.users`]) {
      const st = statSync(p);
      assert.equal(st.uid, 0, p);
      assert.equal(st.mode & 0o777, 0o755, `${p} is ${(st.mode & 0o777).toString(8)}`);
    }
    assert.equal(statSync(path.join(version, 'image.json')).mode & 0o777, 0o644);
    const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'cat', path.join(image.rootfs, 'b.txt'), path.join(version, 'image.json')], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^layer one b\n/);
    const w = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'sh', '-c', `echo x > ${path.join(image.rootfs, 'b.txt')}`], { encoding: 'utf8' });
    assert.notEqual(w.status, 0, 'the sandbox user cannot write b.txt on the host');
  });

  it('a broken archive fails naming the source and what skopeo said, and leaves nothing', async (t) => {
    if (skip) return t.skip(skip);
    const broken = path.join(work, 'broken.tar');
    writeFileSync(broken, 'not a tar archive at all');
    await assert.rejects(buildImage(imageDir, [oci('broken', `docker-archive:${broken}`)], 'broken', { logger: silentLogger }), (e: Error) => {
      assert.ok(e instanceof ImageBuildError);
      assert.match(e.message, new RegExp(`^image "broken": source failed: cannot inspect docker-archive:${broken}: .*manifest\\.json`));
      assert.equal(e.message.includes('\n'), false);
      return true;
    });
    assert.deepEqual(await listVersions(imageDir, 'broken'), []);
  });

  it('runs the setup script in the build sandbox and seals the result', async (t) => {
    if (skip) return t.skip(skip);
    const setup = 'echo made > /made.txt\nchmod 4755 /bin/busybox\nchmod 0777 /made.txt\nexit 0';
    const defs = [oci('with-setup', `oci:${img.layout}:v2`, { setup })];
    const image = await buildImage(imageDir, defs, 'with-setup', { logger: silentLogger });
    assert.equal(readFileSync(path.join(image.rootfs, 'made.txt'), 'utf8'), 'made\n');
    assert.equal(statSync(path.join(image.rootfs, 'bin/busybox')).mode & 0o6000, 0, 'no set-user-ID bit on the host');
    assert.equal(statSync(path.join(image.rootfs, 'made.txt')).mode & 0o002, 0, 'not writable by others on the host');
    assert.ok(!existsSync(path.join(image.rootfs, 'tmp/.image-setup.sh')), 'the setup script is not left in the image');
    assert.equal(statSync(image.rootfs).uid, 0);
  });

  it('a failing setup step fails with its message, leaves no version and keeps the current one', async (t) => {
    if (skip) return t.skip(skip);
    const good = await buildImage(imageDir, [oci('fails', `oci:${img.layout}:v2`)], 'fails', { logger: silentLogger });
    const bad = [oci('fails', `oci:${img.layout}:v2`, { setup: 'echo "cannot do this: it is broken" >&2\nexit 3' })];
    await assert.rejects(buildImage(imageDir, bad, 'fails', { logger: silentLogger }), (e: Error) => {
      assert.ok(e instanceof ImageBuildError);
      assert.equal(e.message.includes('\n'), false);
      assert.match(e.message, /^image "fails": setup failed: cannot do this: it is broken \(setup script exit 3\)$/);
      return true;
    });
    assert.deepEqual((await listVersions(imageDir, 'fails')).map((v) => v.digest), [good.digest]);
    assert.equal((await resolveImage(imageDir, 'fails'))?.digest, good.digest);
    assert.deepEqual(readdirSync(path.join(imageDir, 'fails')).filter((e) => e.startsWith('.build-')), [], 'no build directory left');
  });

  it('a changed definition is a new version; the old one is kept while in use, then collected', async (t) => {
    if (skip) return t.skip(skip);
    const v1 = await buildImage(imageDir, [oci('versions', `oci:${img.layout}:v2`)], 'versions', { logger: silentLogger });
    const release = await acquireVersion(imageDir, 'versions', v1.digest, 'test-1');
    const defs2 = [oci('versions', `oci:${img.layout}:v2`, { env: { CHANGED: '1' } })];
    const v2 = await buildImage(imageDir, defs2, 'versions', { logger: silentLogger });
    assert.notEqual(v2.digest, v1.digest);
    assert.equal((await resolveImage(imageDir, 'versions'))?.digest, v2.digest, 'the new version is current');
    assert.equal((await resolveVersion(imageDir, 'versions', v1.digest))?.rootfs, v1.rootfs, 'the old one is still there');

    // leftovers of an interrupted build (a dead process) and a marker of a dead holder
    const dead = spawnSync('true').pid!;
    const leftover = path.join(imageDir, 'versions', `.build-${'0'.repeat(12)}.${dead}.1.abcd`);
    mkdirSync(path.join(leftover, 'rootfs'), { recursive: true });

    let gc = await collectGarbage(imageDir, defs2);
    assert.deepEqual(gc.inUse, [`versions ${v1.digest}`]);
    assert.ok(gc.removed.some((r) => r.includes('leftover .build-')), gc.removed.join('\n'));
    assert.ok(!existsSync(leftover));
    const listed = await listVersions(imageDir, 'versions');
    assert.deepEqual(listed.map((v) => [v.digest, v.current, v.users]), [[v2.digest, true, []], [v1.digest, false, ['test-1']]]);

    release();
    writeFileSync(path.join(imageDir, 'versions', `${v1.digest.slice(7)}.users`, `${dead}.1.ghost.abcdef`), '');
    gc = await collectGarbage(imageDir, defs2);
    assert.deepEqual(gc.removed, [`versions ${v1.digest}`]);
    assert.equal(await resolveVersion(imageDir, 'versions', v1.digest), null);
    assert.equal((await resolveImage(imageDir, 'versions'))?.digest, v2.digest, 'never the current one');
    await assert.rejects(acquireVersion(imageDir, 'versions', v1.digest, 'late'), /has no version/);
  });

  it('two processes building one image build it once', async (t) => {
    if (skip) return t.skip(skip);
    const builder = path.join(__dirname, '..', '..', 'src', 'images', 'index.js');
    const defs = [oci('raced', `oci:${img.layout}:v2`, { setup: 'sleep 1' })];
    const script = `const { buildImage } = require(${JSON.stringify(builder)});
      buildImage(process.argv[1], JSON.parse(process.argv[2]), 'raced', { logger: { info() {}, warn() {}, error() {} } })
        .then((r) => console.log(JSON.stringify({ built: r.built, digest: r.digest })), (e) => { console.error(e.message); process.exit(1); });`;
    const one = () =>
      new Promise<{ built: boolean; digest: string }>((resolve, reject) => {
        const child = spawn(process.execPath, ['-e', script, imageDir, JSON.stringify(defs)], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        child.stdout.on('data', (d) => (out += d));
        child.stderr.on('data', (d) => (err += d));
        child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`builder exit ${code}: ${err}`))));
      });
    const results = await Promise.all([one(), one()]);
    assert.deepEqual(results.map((r) => r.built).sort(), [false, true], JSON.stringify(results));
    assert.equal(results[0].digest, results[1].digest);
    assert.equal((await listVersions(imageDir, 'raced')).length, 1);
    assert.ok(!existsSync(path.join(imageDir, 'raced', '.build.lock')), 'the lock is released');
  });

  it('takes over an image of the first layout (same source) instead of rebuilding it, and keeps it readable', async (t) => {
    if (skip) return t.skip(skip);
    const mirror = 'http://mirror.invalid/debian';
    const legacy = path.join(imageDir, 'legacy-base');
    mkdirSync(path.join(legacy, 'rootfs', 'bin'), { recursive: true });
    mkdirSync(path.join(legacy, 'rootfs', 'work'));
    spawnSync('cp', ['/bin/busybox', path.join(legacy, 'rootfs', 'bin', 'busybox')]);
    spawnSync('ln', ['-s', 'busybox', path.join(legacy, 'rootfs', 'bin', 'sh')]);
    writeFileSync(path.join(legacy, 'rootfs', 'hello.txt'), 'from the first layout\n');
    writeFileSync(path.join(legacy, 'image.json'), JSON.stringify({ name: 'legacy-base', distribution: 'debian', suite: 'bookworm', variant: 'minbase', mirror }));
    const defs: ImageDefinition[] = [{ name: 'legacy-base', from: 'debian:bookworm', source: { type: 'debian', suite: 'bookworm' }, packages: [], env: {} }];
    const lines: string[] = [];
    const image = await buildImage(imageDir, defs, 'legacy-base', { logger: { ...silentLogger, info: (_o, m) => lines.push(m) }, debianMirror: mirror });
    assert.equal(image.built, true);
    assert.ok(lines.some((l) => /taking over the image of the first layout/.test(l)), lines.join('\n'));
    assert.equal(readFileSync(path.join(image.rootfs, 'hello.txt'), 'utf8'), 'from the first layout\n');
    assert.ok(lstatSync(path.join(legacy, 'rootfs')).isDirectory(), 'the first layout is left for older readers');
    assert.equal((await checkImage(imageDir, 'legacy-base')).ok, true);
  });

  it('gives older readers of <name>/rootfs the current version through links', async (t) => {
    if (skip) return t.skip(skip);
    const image = await resolveImage(imageDir, 'from-oci');
    assert.ok(image);
    assert.equal(readlinkSync(path.join(imageDir, 'from-oci', 'rootfs')), 'current/rootfs');
    assert.equal(readlinkSync(path.join(imageDir, 'from-oci', 'current')), image.digest.slice(7));
    assert.equal((await checkImage(imageDir, 'from-oci')).ok, true);
  });
});

describe('Debian images (the shared cache)', () => {
  const skip = asRoot ? null : 'image builds need root';
  const imageDir = testImageDir();
  const names: string[] = [];
  const defsWith = (def: Omit<ImageDefinition, 'source' | 'from' | 'env'> & { env?: Record<string, string> }): ImageDefinition[] => {
    names.push(def.name);
    return [DEFAULT_IMAGES[0], { ...def, env: def.env ?? {}, from: 'image:debian-bookworm', source: { type: 'image', name: 'debian-bookworm' } }];
  };
  after(() => {
    for (const n of names) rmSync(path.join(imageDir, n), { recursive: true, force: true });
  });

  it('image:debian-bookworm with python3-yaml builds and a test imports the module', async (t) => {
    if (skip) return t.skip(skip);
    const name = `test-yaml-${process.pid}`;
    const progress: string[] = [];
    const image = await buildImage(imageDir, defsWith({ name, packages: ['python3-yaml'] }), name, {
      logger: silentLogger,
      onProgress: (p) => progress.push(`${p.step} ${p.message}`),
    });
    assert.equal(image.built, true);
    assert.ok(progress.some((l) => l.startsWith('packages apt-get install python3-yaml')), progress.join('\n'));
    const r = runIn(image, ['python3', '-c', 'import yaml; print(yaml.safe_load("a: [1, 2]"))']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "{'a': [1, 2]}\n");
    assert.deepEqual(readdirSync(path.join(image.rootfs, 'var/lib/apt/lists')).filter((f) => f !== 'partial' && f !== 'lock'), [], 'apt lists removed');
    assert.ok(!existsSync(path.join(image.rootfs, 'usr/sbin/policy-rc.d')), 'policy-rc.d removed');
  });

  it('an unknown package fails with apt\'s message, leaves no version and keeps the current one', async (t) => {
    if (skip) return t.skip(skip);
    const name = `test-badpkg-${process.pid}`;
    const good = await buildImage(imageDir, defsWith({ name, packages: [], setup: 'echo one > /version.txt' }), name, { logger: silentLogger });
    const bad = defsWith({ name, packages: ['nosuchpkg-orch-test'] });
    await assert.rejects(buildImage(imageDir, bad, name, { logger: silentLogger }), (e: Error) => {
      assert.ok(e instanceof ImageBuildError, String(e));
      assert.equal(e.message.includes('\n'), false);
      assert.match(e.message, new RegExp(`^image "${name}": packages failed: E: Unable to locate package nosuchpkg-orch-test`));
      return true;
    });
    assert.deepEqual((await listVersions(imageDir, name)).map((v) => v.digest), [good.digest]);
    assert.equal((await resolveImage(imageDir, name))?.digest, good.digest);
    assert.deepEqual(readdirSync(path.join(imageDir, name)).filter((e) => e.startsWith('.build-')), []);
  });
});
