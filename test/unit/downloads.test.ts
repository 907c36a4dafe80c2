// Pure rules of downloads (Range, Content-Disposition, Content-Type, tar paths) and the tar writer, whose
// archives GNU tar must read back exactly.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { contentDisposition, contentTypeOf, parseRange, safeRelativePath, TarDirectories, tarEntryPath } from '../../src/domain/downloads';
import { TarWriter } from '../../src/infra/tar-writer';
import { parseTar } from '../helpers/tar';

describe('parseRange', () => {
  it('serves one range, suffix and open-ended ones, clamped to the size', () => {
    assert.deepEqual(parseRange('bytes=0-9', 100), { kind: 'partial', start: 0, end: 9 });
    assert.deepEqual(parseRange('bytes=90-', 100), { kind: 'partial', start: 90, end: 99 });
    assert.deepEqual(parseRange('bytes=-10', 100), { kind: 'partial', start: 90, end: 99 });
    assert.deepEqual(parseRange('bytes=-500', 100), { kind: 'partial', start: 0, end: 99 });
    assert.deepEqual(parseRange('bytes=50-5000', 100), { kind: 'partial', start: 50, end: 99 });
    assert.deepEqual(parseRange('BYTES = 1-1', 100), { kind: 'partial', start: 1, end: 1 });
  });
  it('is unsatisfiable past the end, for an empty suffix, and for any range of an empty blob', () => {
    for (const [h, size] of [['bytes=100-', 100], ['bytes=100-200', 100], ['bytes=-0', 100], ['bytes=0-', 0], ['bytes=-5', 0]] as const) {
      assert.deepEqual(parseRange(h, size), { kind: 'unsatisfiable' }, `${h} of ${size}`);
    }
  });
  it('ignores what it does not serve: no header, another unit, malformed, reversed, several ranges', () => {
    for (const h of [undefined, 'items=0-1', 'bytes=abc', 'bytes=5-1', 'bytes=0-1,5-6', 'bytes=-', 'bytes=', 'bytes=99999999999999999999-']) {
      assert.deepEqual(parseRange(h, 100), { kind: 'whole' }, String(h));
    }
  });
});

describe('contentDisposition and contentTypeOf', () => {
  it('gives an ASCII fallback that cannot break the header, and the exact name in filename*', () => {
    assert.equal(contentDisposition('stdout.log'), `attachment; filename="stdout.log"; filename*=UTF-8''stdout.log`);
    assert.equal(contentDisposition('out/sub/résumé "q".txt'), `attachment; filename="r_sum_ _q_.txt"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22q%22.txt`);
    const evil = contentDisposition('a\r\nSet-Cookie: x=1;"\\%.txt');
    assert.doesNotMatch(evil, /[\r\n]/);
    assert.match(evil, /^attachment; filename="a__Set-Cookie: x=1____.txt"; filename\*=UTF-8''a__Set-Cookie%3A%20x%3D1%3B%22%5C%25\.txt$/);
    assert.equal(contentDisposition('..'), `attachment; filename="artifact"; filename*=UTF-8''artifact`);
    assert.equal(contentDisposition("it's (1)*.log"), `attachment; filename="it's (1)*.log"; filename*=UTF-8''it%27s%20%281%29%2A.log`);
  });
  it('types logs and text as UTF-8 text, what a browser would run as bytes', () => {
    assert.equal(contentTypeOf('stdout.log'), 'text/plain; charset=utf-8');
    assert.equal(contentTypeOf('dir/NOTES.TXT'), 'text/plain; charset=utf-8');
    assert.equal(contentTypeOf('report.json'), 'application/json');
    for (const n of ['core', 'page.html', 'x.svg', 'a.xhtml', '.log', 'noext']) assert.equal(contentTypeOf(n), 'application/octet-stream', n);
  });
});

describe('tar paths', () => {
  it('makes every segment safe and test directories unique', () => {
    assert.equal(safeRelativePath('../../etc/passwd'), '__/__/etc/passwd');
    assert.equal(safeRelativePath('a//b/./c\u0001'), 'a/b/_/c_');
    const dirs = new TarDirectories();
    assert.equal(dirs.of('t1', 'a/b'), 'a_b');
    assert.equal(dirs.of('t2', 'a_b'), 'a_b~2');
    assert.equal(dirs.of('t1', 'a/b'), 'a_b');
    assert.equal(dirs.of('t3', '..'), '__');
    assert.equal(tarEntryPath('a_b', 2, 'out/x.txt'), 'a_b/2/out/x.txt');
  });
});

describe('TarWriter', () => {
  it('writes an archive GNU tar reads back byte for byte: long and non-ASCII paths, empty files, a short source padded', async () => {
    const out = new PassThrough();
    const chunks: Buffer[] = [];
    out.on('data', (c: Buffer) => chunks.push(c));
    const tar = new TarWriter(out);
    const long = `${'d'.repeat(120)}/${'f'.repeat(90)}.log`;
    const binary = Buffer.from([0, 1, 2, 255, 254, 10]);
    const mtime = new Date('2026-01-02T03:04:05Z');
    assert.equal(await tar.entry('plain/1/stdout.log', 6, mtime, Readable.from([binary.subarray(0, 2), binary.subarray(2)])), null);
    assert.equal(await tar.entry(long, 3, mtime, Buffer.from('abc')), null);
    assert.equal(await tar.entry('tëst/1/résumé "q".txt', 4, mtime, Buffer.from('é!!')), null);
    assert.equal(await tar.entry('empty/1/stderr.log', 0, mtime, Readable.from([])), null);
    const short = await tar.entry('short/1/x.bin', 1000, mtime, Readable.from([Buffer.from('only this')]));
    assert.match(short!.message, /ended after 9 of 1000 bytes/);
    await tar.end();
    const archive = Buffer.concat(chunks);
    assert.equal(archive.length % 512, 0);

    const ours = parseTar(archive);
    assert.deepEqual(ours.map((e) => e.path), ['plain/1/stdout.log', long, 'tëst/1/résumé "q".txt', 'empty/1/stderr.log', 'short/1/x.bin']);
    const dir = mkdtempSync(join(tmpdir(), 'tar-writer-'));
    try {
      writeFileSync(join(dir, 'a.tar'), archive);
      const listed = execFileSync('tar', ['-tf', join(dir, 'a.tar')], { encoding: 'utf8' }).trim().split('\n');
      assert.deepEqual(listed, ours.map((e) => e.path));
      execFileSync('tar', ['-xf', join(dir, 'a.tar'), '-C', dir]);
      assert.deepEqual(readFileSync(join(dir, 'plain/1/stdout.log')), binary);
      assert.equal(readFileSync(join(dir, long), 'utf8'), 'abc');
      assert.equal(readFileSync(join(dir, 'tëst/1/résumé "q".txt'), 'utf8'), 'é!!');
      assert.equal(readFileSync(join(dir, 'empty/1/stderr.log')).length, 0);
      const padded = readFileSync(join(dir, 'short/1/x.bin'));
      assert.deepEqual([padded.length, padded.subarray(0, 9).toString(), padded.subarray(9).every((b) => b === 0)], [1000, 'only this', true]);
      const verbose = execFileSync('tar', ['-tvf', join(dir, 'a.tar'), '--utc'], { encoding: 'utf8' });
      assert.match(verbose, /2026-01-02 03:04/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
