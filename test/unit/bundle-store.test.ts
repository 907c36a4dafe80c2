// The bundle store on real files: archives made by GNU tar (every format it writes), by Python's
// tarfile and by hand, unpacked with their modes, times and links; every hostile archive refused with
// its line, leaving nothing in the store and nothing outside it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { BundleStore, type BundleLimits } from '../../src/infra/bundle/bundle-store';
import { BundleError } from '../../src/infra/tar/bundle-error';
import { packDirectory } from '../../src/infra/tar/tar-writer';
import { makeTempDir, type TempDir } from '../helpers/sandbox-env';
import { dir, file, hardlink, hostileArchives, symlink, tarOf } from '../helpers/tar-archives';

const LIMITS: BundleLimits = { maxArchiveBytes: 8 * 1024 * 1024, maxUnpackedBytes: 1024 * 1024, maxEntries: 50 };

/** The body in chunks of odd sizes, as a network delivers it. */
function chunked(body: Buffer, size = 777): AsyncIterable<Buffer> {
  const parts: Buffer[] = [];
  for (let i = 0; i < body.length; i += size) parts.push(body.subarray(i, i + size));
  return Readable.from(parts);
}

/** Every path below `root` (relative, sorted). */
function listTree(root: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of readdirSync(path.join(root, rel)).sort()) {
      const p = rel ? `${rel}/${name}` : name;
      out.push(p);
      if (lstatSync(path.join(root, p)).isDirectory()) walk(p);
    }
  };
  walk('');
  return out;
}

describe('bundle store', () => {
  let tmp: TempDir;
  let store: BundleStore;
  let canary: string;

  before(() => {
    tmp = makeTempDir('orch-bundles-');
    store = new BundleStore(path.join(tmp.path, 'store'));
    canary = path.join(tmp.path, 'canary');
    mkdirSync(canary);
  });
  after(() => tmp.cleanup());

  it('unpacks GNU tar archives of every format, gzip or not, with modes, times and links', async () => {
    const src = path.join(tmp.path, 'project');
    const long = `${'deep-directory-name/'.repeat(8)}${'a-rather-long-file-name-'.repeat(6)}.txt`; // > 100 and > 155 bytes
    mkdirSync(path.join(src, path.dirname(long)), { recursive: true });
    writeFileSync(path.join(src, long), 'long\n');
    mkdirSync(path.join(src, 'bin'));
    writeFileSync(path.join(src, 'bin/test.sh'), '#!/bin/sh\necho ok\n');
    chmodSync(path.join(src, 'bin/test.sh'), 0o750);
    writeFileSync(path.join(src, 'data.csv'), 'a,b\n1,2\n');
    symlinkSync('bin/test.sh', path.join(src, 'run'));
    symlinkSync('../data.csv', path.join(src, 'bin/data'));
    writeFileSync(path.join(src, 'ünïcode.txt'), 'u\n');
    utimesSync(path.join(src, 'data.csv'), 1_600_000_000, 1_600_000_000);
    for (const format of ['gnu', 'pax', 'ustar', 'posix']) {
      for (const gz of [false, true]) {
        const archive = path.join(tmp.path, `p.${format}.tar${gz ? '.gz' : ''}`);
        const args = ['-C', src, `--format=${format}`, gz ? '-czf' : '-cf', archive, '.'];
        try {
          execFileSync('tar', args, { stdio: 'pipe' });
        } catch (err) {
          // ustar cannot hold the long name: GNU tar says so; the other formats must all work
          assert.equal(format, 'ustar', `tar ${args.join(' ')}: ${(err as { stderr?: Buffer }).stderr}`);
          continue;
        }
        const bytes = readFileSync(archive);
        const m = await store.put(chunked(bytes), LIMITS, bytes.length);
        assert.equal(m.id, `sha256:${createHash('sha256').update(bytes).digest('hex')}`, 'the id is the sha256 of the bytes uploaded');
        const tree = store.treeOf(m.id);
        assert.deepEqual(listTree(tree), listTree(src), `${format}${gz ? '.gz' : ''}: the same tree`);
        assert.equal(readFileSync(path.join(tree, long), 'utf8'), 'long\n');
        assert.equal(lstatSync(path.join(tree, 'bin/test.sh')).mode & 0o777, 0o750);
        assert.equal(readlinkSync(path.join(tree, 'run')), 'bin/test.sh');
        assert.equal(readFileSync(path.join(tree, 'bin/data'), 'utf8'), 'a,b\n1,2\n', 'a link inside the bundle works');
        assert.equal(lstatSync(path.join(tree, 'data.csv')).mtimeMs, 1_600_000_000_000);
        assert.deepEqual({ files: m.files, sizeBytes: m.sizeBytes }, { files: 6, sizeBytes: 5 + 18 + 8 + 2 });
      }
    }
  });

  it('reads Python tarfile archives (GNU and pax formats, hard links)', async () => {
    const script = `
import tarfile, io, sys
fmt = {'gnu': tarfile.GNU_FORMAT, 'pax': tarfile.PAX_FORMAT}[sys.argv[1]]
with tarfile.open(fileobj=sys.stdout.buffer, mode='w|', format=fmt) as t:
    data = b'hello\\n'
    i = tarfile.TarInfo('dir/' + 'n' * 150 + '.txt'); i.size = len(data); t.addfile(i, io.BytesIO(data))
    h = tarfile.TarInfo('hard'); h.type = tarfile.LNKTYPE; h.linkname = 'dir/' + 'n' * 150 + '.txt'; t.addfile(h)
`;
    for (const fmt of ['gnu', 'pax']) {
      const bytes = execFileSync('python3', ['-c', script, fmt]);
      const m = await store.put(chunked(bytes, 100), LIMITS);
      const tree = store.treeOf(m.id);
      assert.equal(readFileSync(path.join(tree, 'hard'), 'utf8'), 'hello\n');
      assert.equal(m.files, 2);
      assert.equal(m.sizeBytes, 12, 'a hard link counts its file again');
    }
  });

  it('stores the same bytes once; packDirectory packs what GNU tar reads back', async () => {
    const before = readdirSync(store.root).length;
    const bytes = gzipSync(tarOf([dir('x/'), file('x/a.txt', 'A'), hardlink('x/b.txt', 'x/a.txt'), symlink('y', 'x')]));
    const a = await store.put(chunked(bytes), LIMITS);
    const b = await store.put(chunked(bytes, 13), LIMITS);
    assert.equal(a.id, b.id);
    assert.equal(readdirSync(store.root).length, before + 1, 'one directory for both uploads');
    assert.deepEqual(readdirSync(path.join(store.root, 'tmp')), [], 'nothing left being unpacked');

    const parts: Buffer[] = [];
    for await (const p of packDirectory(store.treeOf(a.id))) parts.push(p);
    const out = path.join(tmp.path, 'unpacked-by-gnu-tar');
    mkdirSync(out);
    execFileSync('tar', ['-C', out, '-xf', '-'], { input: Buffer.concat(parts) });
    assert.deepEqual(listTree(out), ['x', 'x/a.txt', 'x/b.txt', 'y']);
    assert.equal(readlinkSync(path.join(out, 'y')), 'x');
  });

  it('refuses every hostile archive with its line, storing nothing and writing nothing outside', async () => {
    const around = readdirSync(tmp.path).sort();
    for (const h of hostileArchives(canary)) {
      const entriesBefore = readdirSync(store.root).sort();
      await assert.rejects(
        store.put(chunked(h.body, 4096), LIMITS, h.body.length),
        (err: unknown) => {
          assert.ok(err instanceof BundleError, `${h.name}: ${(err as Error).stack}`);
          assert.equal(err.status, h.status, `${h.name}: ${err.message}`);
          assert.match(err.message, h.error, h.name);
          assert.ok(!err.message.includes('\n'), `${h.name}: one line`);
          return true;
        },
      );
      assert.deepEqual(readdirSync(store.root).sort(), entriesBefore, `${h.name}: nothing stored`);
      assert.deepEqual(readdirSync(path.join(store.root, 'tmp')), [], `${h.name}: nothing left in tmp`);
      assert.deepEqual(readdirSync(canary), [], `${h.name}: nothing written outside the store`);
    }
    assert.deepEqual(readdirSync(tmp.path).sort(), around, 'nothing made beside the store');
  });

  it("removes what a crashed upload left in tmp/, once it is hours old", async () => {
    const fresh = new BundleStore(path.join(tmp.path, 'store-sweep'));
    const old = path.join(fresh.root, 'tmp', '123.deadbeef');
    const recent = path.join(fresh.root, 'tmp', '124.cafe');
    mkdirSync(path.join(old, 'tree'), { recursive: true });
    mkdirSync(recent, { recursive: true });
    utimesSync(old, new Date(Date.now() - 7 * 3600_000), new Date(Date.now() - 7 * 3600_000));
    await fresh.put(chunked(tarOf([file('a.txt')])), LIMITS);
    assert.deepEqual(readdirSync(path.join(fresh.root, 'tmp')), ['124.cafe'], 'an upload still under way (or recent) is left alone');
  });

  it('refuses an upload over MAX_BUNDLE_BYTES, declared or not', async () => {
    const body = tarOf([file('a.bin', Buffer.alloc(64 * 1024))]);
    const small = { ...LIMITS, maxArchiveBytes: 32 * 1024 };
    await assert.rejects(store.put(chunked(body), small, body.length), /^BundleError: the archive is 67072 bytes, more than 32768 bytes \(MAX_BUNDLE_BYTES\)$/);
    await assert.rejects(store.put(chunked(body), small, null), /^BundleError: the archive is more than 32768 bytes \(MAX_BUNDLE_BYTES\)$/);
    assert.deepEqual(readdirSync(path.join(store.root, 'tmp')), []);
  });

  it('reads zstd archives when the zstd program is there', { skip: !hasZstd() && 'no zstd program' }, async () => {
    const tar = tarOf([file('z.txt', 'zstd\n')]);
    const bytes = execFileSync('zstd', ['-q', '-c'], { input: tar });
    const m = await store.put(chunked(bytes), LIMITS);
    assert.equal(readFileSync(path.join(store.treeOf(m.id), 'z.txt'), 'utf8'), 'zstd\n');
    await assert.rejects(store.put(chunked(Buffer.concat([bytes.subarray(0, 8), Buffer.alloc(100, 1)])), LIMITS), /^BundleError: the zstd stream is corrupt/);
  });
});

function hasZstd(): boolean {
  try {
    execFileSync('zstd', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
