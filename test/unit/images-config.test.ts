// Image definitions (src/config/images.ts): IMAGES / IMAGES_FILE, every problem listed, the defaults,
// pools naming images; and the digest of a definition (src/images/digest.ts) changing with it.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config/config';
import { DEFAULT_IMAGES, imageLineage, loadImages, poolImageProblems, type ImageDefinition } from '../../src/config/images';
import { DEFAULT_POOLS } from '../../src/config/pools';
import { computeDigests, definitionDigest } from '../../src/images/digest';
import { hostDebianMirror } from '../../src/images/mirror';

function problems(json: unknown): string[] {
  const r = loadImages({ json: JSON.stringify(json), cwd: '/srv' });
  assert.ok(r && 'problems' in r, `refused: ${JSON.stringify(json)}`);
  return r.problems;
}

function images(json: unknown, cwd = '/srv'): ImageDefinition[] {
  const r = loadImages({ json: JSON.stringify(json), cwd });
  assert.ok(r && 'images' in r, `accepted: ${JSON.stringify(r)}`);
  // the defaults come first (those not replaced): left out here, where the test's own list is looked at
  const given = new Set((json as { name: string }[]).map((d) => d.name));
  return r.images.filter((d) => given.has(d.name));
}

const DEFAULT_NAMES = ['debian-bookworm', 'debian-bookworm-services'];

describe('image definitions', () => {
  it('defaults to debian-bookworm and debian-bookworm-services when neither IMAGES nor IMAGES_FILE is set', () => {
    const c = loadConfig({});
    assert.deepEqual(c.images, DEFAULT_IMAGES);
    assert.deepEqual(c.images.map((i) => [i.name, i.from]), [
      ['debian-bookworm', 'debian:bookworm'],
      ['debian-bookworm-services', 'image:debian-bookworm'],
    ]);
    for (const p of ['python3', 'curl', 'git', 'jq', 'ca-certificates', 'procps', 'redis-server', 'redis-tools', 'postgresql']) {
      assert.ok(c.images[1].packages.includes(p), p);
    }
    assert.deepEqual(poolImageProblems(DEFAULT_POOLS, DEFAULT_IMAGES), []);
  });

  it('adds the configured images to the defaults, which they may build on or replace by name', () => {
    const added = loadConfig({ IMAGES: JSON.stringify([{ name: 'py', from: 'image:debian-bookworm', packages: ['python3-yaml'] }]) });
    assert.deepEqual(added.images.map((i) => [i.name, i.from]), [...DEFAULT_IMAGES.map((d) => [d.name, d.from]), ['py', 'image:debian-bookworm']]);
    const replaced = loadConfig({ IMAGES: JSON.stringify([{ name: 'debian-bookworm', from: 'debian:bookworm', packages: ['jq'] }]) });
    assert.deepEqual(replaced.images.map((i) => [i.name, i.packages.join()]), [['debian-bookworm-services', DEFAULT_IMAGES[1].packages.join()], ['debian-bookworm', 'jq']]);
    const r = loadImages({ json: JSON.stringify([{ name: 'x', from: 'image:nothing-like-it' }]) });
    assert.ok(r && 'problems' in r && /no image named "nothing-like-it" is defined/.test(r.problems.join()), JSON.stringify(r));
  });

  it('parses every kind of source, with paths made absolute', () => {
    const defs = images([
      { name: 'base', from: 'debian:trixie' },
      { name: 'tools.v2', from: 'image:base', packages: ['python3-yaml', 'g++', 'libc6.1-dev'], setup: 'echo hi > /etc/motd', env: { A_B: '1', PATH: '/x' } },
      { name: 'o1', from: 'oci:layouts/x:v1' },
      { name: 'o2', from: 'oci:/abs/layout' },
      { name: 'o3', from: 'oci-archive:img.tar:latest' },
      { name: 'o4', from: 'docker-archive:saved.tar' },
      { name: 'o5', from: 'docker://docker.io/library/debian:bookworm' },
    ]);
    assert.deepEqual(defs.map((d) => d.source), [
      { type: 'debian', suite: 'trixie' },
      { type: 'image', name: 'base' },
      { type: 'oci', path: '/srv/layouts/x', tag: 'v1' },
      { type: 'oci', path: '/abs/layout' },
      { type: 'oci-archive', path: '/srv/img.tar', tag: 'latest' },
      { type: 'docker-archive', path: '/srv/saved.tar' },
      { type: 'docker', ref: 'docker.io/library/debian:bookworm' },
    ]);
    assert.deepEqual(defs[1].packages, ['python3-yaml', 'g++', 'libc6.1-dev']);
    assert.equal(defs[1].setup, 'echo hi > /etc/motd');
    assert.deepEqual(defs[0].packages, []);
    assert.deepEqual(defs[0].env, {});
    assert.deepEqual(imageLineage(defs, 'tools.v2').map((d) => d.name), ['base', 'tools.v2']);
  });

  it('lists every problem at once, each naming the entry and the field', () => {
    const list = problems([
      { name: 'Bad Name', from: 'debian:bookworm' },
      { name: 'a', from: 'ubuntu:jammy' },
      { name: 'b', from: 'image:nowhere' },
      { name: 'c', from: 'debian:bookworm', packages: ['ok', 'rm -rf /', '-o', 'UPPER'] },
      { name: 'd', from: 'debian:bookworm', env: { '1X': 'v', OK: 'a\u0000b' } },
      { name: 'e', from: 'debian:bookworm', setup: 'x\u0000y' },
      { name: 'e', from: 'debian:bookworm' },
      { name: 'f', from: 'debian:bookworm', pakages: ['typo'] },
      { name: 'g', from: 'oci:dir:bad tag' },
      { name: 'h', from: 'docker://UPPER/Case' },
      { name: 'i' },
    ]);
    const text = list.join('\n');
    const expect = [
      /^IMAGES \[0\]\.name: lower-case letters/m,
      /^IMAGES \[1\]\.from \("a"\): one of debian:SUITE, image:NAME, oci:DIR\[:TAG\]/m,
      /^IMAGES \[2\]\.from \("b"\): no image named "nowhere" is defined/m,
      /^IMAGES \[3\]\.packages\[1\] \("c"\): a Debian package name/m,
      /^IMAGES \[3\]\.packages\[2\] \("c"\): a Debian package name/m,
      /^IMAGES \[3\]\.packages\[3\] \("c"\): a Debian package name/m,
      /^IMAGES \[4\]\.env\.1X \("d"\): variable names are letters/m,
      /^IMAGES \[4\]\.env\.OK \("d"\): must not contain a NUL/m,
      /^IMAGES \[5\]\.setup \("e"\): must not contain a NUL/m,
      /^IMAGES \[6\]\.name \("e"\): duplicate image name "e"/m,
      /^IMAGES \[7\] \("f"\): Unrecognized key: "pakages"/m,
      /^IMAGES \[8\]\.from \("g"\): oci: the path cannot hold ":"/m,
      /^IMAGES \[9\]\.from \("h"\): docker:\/\/REF needs a registry reference/m,
      /^IMAGES \[10\]\.from \("i"\): /m,
    ];
    for (const re of expect) assert.match(text, re);
    assert.equal(list.length, expect.length, text);
  });

  it('refuses cycles, a self-reference included', () => {
    const text = problems([
      { name: 'a', from: 'image:b' },
      { name: 'b', from: 'image:a' },
      { name: 'c', from: 'image:c' },
      { name: 'ok', from: 'debian:bookworm' },
    ]).join('\n');
    assert.match(text, /\[0\]\.from \("a"\): images build on each other in a cycle: a → b → a/);
    assert.match(text, /\[1\]\.from \("b"\): images build on each other in a cycle: b → a → b/);
    assert.match(text, /\[2\]\.from \("c"\): images build on each other in a cycle: c → c/);
  });

  it('reads IMAGES_FILE as YAML or JSON, paths relative to the file; IMAGES wins', () => {
    const dir = mkdtempSync(join(tmpdir(), 'orch-images-'));
    try {
      const yaml = join(dir, 'images.yaml');
      writeFileSync(yaml, ['- name: base', '  from: debian:bookworm', '- name: imported', '  from: oci-archive:img.tar:v1', '  env:', '    GREETING: hello'].join('\n'));
      const c = loadConfig({ IMAGES_FILE: yaml });
      assert.deepEqual(c.images.map((i) => i.name), [...DEFAULT_NAMES, 'base', 'imported']);
      assert.deepEqual(c.images[3].source, { type: 'oci-archive', path: join(dir, 'img.tar'), tag: 'v1' });
      assert.deepEqual(c.images[3].env, { GREETING: 'hello' });
      const json = join(dir, 'images.json');
      writeFileSync(json, JSON.stringify([{ name: 'j', from: 'debian:bookworm' }]));
      assert.deepEqual(loadConfig({ IMAGES_FILE: json }).images.map((i) => i.name), [...DEFAULT_NAMES, 'j']);
      assert.deepEqual(loadConfig({ IMAGES_FILE: json, IMAGES: JSON.stringify([{ name: 'k', from: 'debian:sid' }]) }).images.map((i) => i.name), [...DEFAULT_NAMES, 'k']);
      writeFileSync(yaml, '- name: [unclosed');
      assert.throws(() => loadConfig({ IMAGES_FILE: yaml }), (e: unknown) => e instanceof ConfigError && /^IMAGES_FILE \(.*images\.yaml\): not valid YAML or JSON/.test(e.problems[0]));
      assert.throws(() => loadConfig({ IMAGES_FILE: join(dir, 'none.yaml') }), (e: unknown) => e instanceof ConfigError && /^IMAGES_FILE: cannot read/.test(e.problems[0]));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports image problems with the other configuration problems', () => {
    try {
      loadConfig({ PORT: 'x', IMAGES: '[{"name":"a","from":"nope:"}]', DEBIAN_MIRROR: 'ftp://x' });
      assert.fail('accepted');
    } catch (e) {
      assert.ok(e instanceof ConfigError);
      const names = e.problems.map((p) => p.split(/[: ]/)[0]).sort();
      assert.deepEqual(names, ['DEBIAN_MIRROR', 'IMAGES', 'PORT'], e.problems.join('\n'));
    }
    assert.throws(() => loadConfig({ IMAGES: '[' }), (e: unknown) => e instanceof ConfigError && /^IMAGES: not valid JSON/.test(e.problems[0]));
    assert.throws(() => loadConfig({ IMAGES: '[]' }), (e: unknown) => e instanceof ConfigError && /at least one image/.test(e.problems[0]));
  });

  it('gives the build what it takes from the environment: DEBIAN_MIRROR and proxy variables', () => {
    const c = loadConfig({ DEBIAN_MIRROR: 'http://mirror.example/debian', http_proxy: 'http://proxy:3128', NO_PROXY: 'localhost', OTHER: 'x' });
    assert.deepEqual(c.imageBuild, { debianMirror: 'http://mirror.example/debian', proxyEnv: { http_proxy: 'http://proxy:3128', NO_PROXY: 'localhost' } });
  });

  it('names pools whose images are not defined', () => {
    const defs = images([{ name: 'base', from: 'debian:bookworm' }, { name: 'tools', from: 'image:base' }]);
    const pools = [
      { name: 'ok', image: 'base', images: ['*'] },
      { name: 'ok2', image: 'tools', images: ['tools', 'base'] },
      { name: 'bad-default', image: 'nope' },
      { name: 'bad-list', image: 'base', images: ['base', 'missing'] },
      { name: 'default-not-listed', image: 'base', images: ['tools'] },
    ];
    assert.deepEqual(poolImageProblems(pools, defs), [
      'pool "bad-default": image "nope" is not defined (defined: base, tools; see IMAGES)',
      'pool "bad-list": images lists "missing", which is not defined (defined: base, tools)',
      'pool "default-not-listed": its default image "base" is not in its images list',
    ]);
  });
});

describe('image digests', () => {
  const ctx = { mirror: 'http://deb.debian.org/debian', skopeo: '/nonexistent/skopeo', env: {} };
  const defs = (over: Partial<ImageDefinition> = {}, baseOver: Partial<ImageDefinition> = {}): ImageDefinition[] => [
    { name: 'base', from: 'debian:bookworm', source: { type: 'debian', suite: 'bookworm' }, packages: [], env: {}, ...baseOver },
    { name: 'tools', from: 'image:base', source: { type: 'image', name: 'base' }, packages: ['python3-yaml'], env: {}, ...over },
  ];
  const digestOf = async (d: ImageDefinition[], name = 'tools', c = ctx) => (await computeDigests(d, c)).get(name)!.digest;

  it('is a sha256 that stays the same for the same definition', async () => {
    const a = await digestOf(defs());
    assert.match(a, /^sha256:[0-9a-f]{64}$/);
    assert.equal(await digestOf(defs()), a);
    // the key order of env does not matter, the name does not either (the content does)
    assert.equal(await digestOf(defs({ env: { A: '1', B: '2' } })), await digestOf(defs({ env: { B: '2', A: '1' } })));
    assert.equal(await digestOf(defs({ name: 'other' }), 'other'), a);
  });

  it('changes with the packages, the setup, the env, the parent and the source', async () => {
    const seen = new Set<string>();
    const variants: [string, Promise<string>][] = [
      ['as is', digestOf(defs())],
      ['another package', digestOf(defs({ packages: ['python3-yaml', 'jq'] }))],
      ['no package', digestOf(defs({ packages: [] }))],
      ['setup', digestOf(defs({ setup: 'true' }))],
      ['other setup', digestOf(defs({ setup: 'true ' }))],
      ['env', digestOf(defs({ env: { A: '1' } }))],
      ['env value', digestOf(defs({ env: { A: '2' } }))],
      ['parent packages', digestOf(defs({}, { packages: ['curl'] }))],
      ['parent suite', digestOf(defs({}, { source: { type: 'debian', suite: 'trixie' } }))],
      ['mirror', digestOf(defs(), 'tools', { ...ctx, mirror: 'http://other/debian' })],
    ];
    for (const [what, p] of variants) {
      const d = await p;
      assert.ok(!seen.has(d), `${what} gives a digest of its own`);
      seen.add(d);
    }
  });

  it('names the image whose OCI source cannot be read', async () => {
    const d: ImageDefinition[] = [{ name: 'imp', from: 'oci:/nonexistent/layout', source: { type: 'oci', path: '/nonexistent/layout' }, packages: [], env: {} }];
    await assert.rejects(computeDigests(d, ctx), /image "imp": source failed: oci:\/nonexistent\/layout: not an OCI layout \(no index.json\)$/);
    const a: ImageDefinition[] = [{ name: 'arc', from: 'docker-archive:/x.tar', source: { type: 'docker-archive', path: '/x.tar' }, packages: [], env: {} }];
    await assert.rejects(computeDigests(a, ctx), /image "arc": source failed: cannot inspect docker-archive:\/x.tar: .*skopeo not found/);
  });

  it('definitionDigest is pure over the source identity', () => {
    const src = { type: 'oci' as const, transport: 'oci' as const, manifestDigest: `sha256:${'a'.repeat(64)}` };
    const x = definitionDigest({ packages: [], env: {} }, src);
    assert.equal(definitionDigest({ packages: [], env: {} }, src), x);
    assert.notEqual(definitionDigest({ packages: [], env: {} }, { ...src, manifestDigest: `sha256:${'b'.repeat(64)}` }), x);
  });

  it('takes the mirror from the host apt sources (deb822 first, security archives skipped)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'orch-apt-'));
    try {
      assert.equal(hostDebianMirror(dir), 'http://deb.debian.org/debian');
      writeFileSync(join(dir, 'sources.list'), '# c\ndeb [arch=amd64] http://one.example/debian/ bookworm main\n');
      assert.equal(hostDebianMirror(dir), 'http://one.example/debian');
      mkdirSync(join(dir, 'sources.list.d'));
      writeFileSync(join(dir, 'sources.list.d', 'debian.sources'), 'Types: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\n\nTypes: deb\nURIs: http://two.example/debian\nSuites: bookworm\n');
      assert.equal(hostDebianMirror(dir), 'http://two.example/debian');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
