// The figures tests report themselves (src/environments/reported-metrics.ts): `##metric` lines found
// in a stream whatever its chunks, and the $METRICS_FILE format; hostile input is ignored, never fatal.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  MAX_METRIC_LINE,
  MAX_REPORTED_METRICS,
  MetricLineScanner,
  parseMetricLine,
  parseMetricsFile,
} from '../../src/environments/reported-metrics';

function scan(chunks: (string | Buffer)[]) {
  const s = new MetricLineScanner();
  for (const c of chunks) s.push(Buffer.isBuffer(c) ? c : Buffer.from(c));
  return { metrics: s.end(), ignored: s.ignored };
}

describe('##metric lines', () => {
  const text =
    'hello\n##metric a 1\nx ##metric no 2\n##metric b -2.5e3 ms\r\n##metricc 3\n##metric c 4 µs\n  ##metric indented 5\n' +
    '##metric bad NaN\n##metric bad2 Infinity\n##metric bad3 0x10\n##metric 9starts_with_digit 1\n##metric toomany 1 ms x\n##metric last 6';
  const expected = [
    { name: 'a', value: 1, unit: null },
    { name: 'b', value: -2500, unit: 'ms' },
    { name: 'c', value: 4, unit: 'µs' },
    { name: 'last', value: 6, unit: null },
  ];

  it('are found in one chunk, and lines that only look like them are not', () => {
    const r = scan([text]);
    assert.deepEqual(r.metrics, expected);
    assert.equal(r.ignored, 5); // NaN, Infinity, 0x10, a name starting with a digit, four fields
  });

  it('are found whatever the chunks: split at every byte, and one byte at a time', () => {
    const bytes = Buffer.from(text);
    for (let cut = 0; cut <= bytes.length; cut++) {
      assert.deepEqual(scan([bytes.subarray(0, cut), bytes.subarray(cut)]).metrics, expected, `cut at ${cut}`);
    }
    assert.deepEqual(scan([...bytes].map((b) => Buffer.from([b]))).metrics, expected);
  });

  it('ignores a line too long to be one, without keeping it, and goes on', () => {
    const long = `##metric long ${'1'.repeat(MAX_METRIC_LINE)}\n##metric after 1\n`;
    const r = scan([long.slice(0, 100), long.slice(100, 300), long.slice(300)]);
    assert.deepEqual(r.metrics, [{ name: 'after', value: 1, unit: null }]);
    assert.equal(r.ignored, 1);
    // megabytes of other output in large chunks, with a metric line in the middle
    const noise = Buffer.alloc(4 * 1024 * 1024, 'x');
    assert.deepEqual(scan([noise, '\n##metric mid 2\n', noise]).metrics, [{ name: 'mid', value: 2, unit: null }]);
  });

  it('keeps at most MAX_REPORTED_METRICS', () => {
    const many = Array.from({ length: MAX_REPORTED_METRICS + 5 }, (_, i) => `##metric m${i} ${i}\n`).join('');
    const r = scan([many]);
    assert.equal(r.metrics.length, MAX_REPORTED_METRICS);
    assert.equal(r.ignored, 5);
  });

  it('names and units: bounded, printable, no control characters', () => {
    assert.equal(parseMetricLine(`##metric ${'n'.repeat(128)} 1`)?.name.length, 128);
    assert.equal(parseMetricLine(`##metric ${'n'.repeat(129)} 1`), null);
    assert.equal(parseMetricLine('##metric a\u0007b 1'), null);
    assert.equal(parseMetricLine(`##metric a 1 ${'u'.repeat(33)}`), null);
    assert.equal(parseMetricLine('##metric a 1 m\u202es'), null, 'no bidi controls in a unit');
    assert.deepEqual(parseMetricLine('##metric net.rx/s 1e3 B/s'), { name: 'net.rx/s', value: 1000, unit: 'B/s' });
  });
});

describe('$METRICS_FILE', () => {
  it('is a JSON array of {name, value, unit?}; entries that are not are ignored', () => {
    const r = parseMetricsFile(JSON.stringify([
      { name: 'a', value: 1.5, unit: 'ms' },
      { name: 'b', value: 2 },
      { name: 'c', value: '3' }, // a string is not a number
      { name: 'd', value: null },
      { name: 'e', value: 1, unit: 7 },
      'x',
      null,
      [1],
      { name: 'f', value: 1e308 * 10 }, // JSON.stringify writes null for Infinity
    ]));
    assert.deepEqual(r.metrics, [
      { name: 'a', value: 1.5, unit: 'ms' },
      { name: 'b', value: 2, unit: null },
    ]);
    assert.equal(r.ignored, 7);
  });

  it('anything else is ignored whole', () => {
    for (const text of ['', 'not json', '{"a": 1}', '1', '"x"', '[1,2']) assert.deepEqual(parseMetricsFile(text), { metrics: [], ignored: 1 }, text);
  });

  it('fills only the room left by stdout', () => {
    const r = parseMetricsFile(JSON.stringify([{ name: 'a', value: 1 }, { name: 'b', value: 2 }]), 1);
    assert.deepEqual(r.metrics, [{ name: 'a', value: 1, unit: null }]);
    assert.equal(r.ignored, 1);
  });
});
