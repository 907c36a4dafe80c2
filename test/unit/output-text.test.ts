// Output bytes as text: src/domain/output-text.ts and the live chunks of src/worker/output-publisher.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { completeUtf8Length, decodeOutput, isExactText, rowOutput, withoutNul } from '../../src/domain/output-text';
import type { OutputChunkView } from '../../src/views/view.types';
import { OutputPublisher } from '../../src/worker/output-publisher';

const b = (...bytes: number[]) => Buffer.from(bytes);

describe('output bytes as row text', () => {
  it('keeps valid text as it is, byte-exact', () => {
    const r = rowOutput(Buffer.from('plain é ✓ 😀\n'), 1024, 'stdout.log');
    assert.deepEqual(r, { text: 'plain é ✓ 😀\n', exact: true, abridged: false });
    assert.equal(isExactText(Buffer.from('\uFFFD literally')), true, 'a U+FFFD the test printed is exact');
  });

  it('replaces NUL and invalid UTF-8 by U+FFFD, and says where the exact bytes are', () => {
    const r = rowOutput(b(0x61, 0x00, 0x62, 0xff, 0x63), 1024, 'stdout.log');
    assert.equal(r.exact, false);
    assert.equal(r.abridged, false);
    assert.equal(r.text, 'a\uFFFDb\uFFFDc\n[not valid text: NUL bytes and invalid UTF-8 are shown as U+FFFD; the exact bytes are the artifact stdout.log]\n');
    assert.ok(!r.text.includes('\0'));
    assert.ok(Buffer.from(r.text).toString('utf8') === r.text, 'valid UTF-8');
    // overlong, surrogate and truncated sequences
    for (const bad of [b(0xc0, 0xaf), b(0xed, 0xa0, 0x80), b(0xe2, 0x82), b(0xf5, 0x80, 0x80, 0x80)]) {
      const t = rowOutput(bad, 1024, 'x.log');
      assert.equal(t.exact, false, bad.toString('hex'));
      assert.ok(t.text.startsWith('\uFFFD'), bad.toString('hex'));
    }
  });

  it('abridges long output on character boundaries, head and tail safe', () => {
    const long = Buffer.concat([Buffer.from('é'.repeat(100)), b(0), Buffer.from('é'.repeat(100))]); // 401 bytes
    const r = rowOutput(long, 101, 'stderr.log');
    assert.equal(r.abridged, true);
    assert.equal(r.exact, false);
    assert.ok(!r.text.includes('\0'));
    assert.ok(!r.text.includes('\uFFFD\uFFFD'), 'no character cut in two');
    assert.match(r.text, /^é{25}\n… \[301 bytes omitted: the whole output is the artifact stderr\.log\] …\né{25}\n\[not valid text/);
  });

  it('withoutNul and decodeOutput', () => {
    assert.equal(withoutNul('a\0b\0'), 'a\uFFFDb\uFFFD');
    assert.equal(withoutNul('clean'), 'clean');
    assert.equal(decodeOutput(new Uint8Array([0x68, 0x00, 0xe9])), 'h\uFFFD\uFFFD');
  });

  it('completeUtf8Length holds back only an incomplete last sequence', () => {
    const euro = Buffer.from('€'); // e2 82 ac
    assert.equal(completeUtf8Length(Buffer.from('ab')), 2);
    assert.equal(completeUtf8Length(euro), 3);
    assert.equal(completeUtf8Length(euro.subarray(0, 1)), 0);
    assert.equal(completeUtf8Length(Buffer.concat([Buffer.from('a'), euro.subarray(0, 2)])), 1);
    assert.equal(completeUtf8Length(Buffer.concat([Buffer.from('a'), Buffer.from('😀').subarray(0, 3)])), 1);
    assert.equal(completeUtf8Length(b(0x61, 0xff)), 2, 'an invalid byte is not held back');
    assert.equal(completeUtf8Length(b(0x80, 0x80, 0x80, 0x80)), 4, 'stray continuation bytes are not held back');
  });
});

describe('live output chunks', () => {
  const recorder = () => {
    const chunks: OutputChunkView[] = [];
    return { chunks, bus: { emit: (_topic: string, payload: unknown) => void chunks.push(payload as OutputChunkView) } as any };
  };

  it('never splits a character between chunks, replaces NUL, and counts byte offsets', () => {
    const { chunks, bus } = recorder();
    const p = new OutputPublisher(bus, 't');
    const euro = Buffer.from('€');
    p.push('stdout', Buffer.concat([Buffer.from('a'), b(0), euro.subarray(0, 1)]));
    (p as any).flushBoth(false); // what the 50 ms timer does
    p.push('stdout', Buffer.concat([euro.subarray(1), Buffer.from('z')]));
    p.push('stderr', b(0xe2)); // an incomplete sequence at the very end: flushed as U+FFFD
    p.flushAll();
    assert.deepEqual(
      chunks.map((c) => [c.stream, c.data, c.offset]),
      [
        ['stdout', 'a\uFFFD', 0],
        ['stdout', '€z', 2],
        ['stderr', '\uFFFD', 0],
      ],
    );
  });
});
