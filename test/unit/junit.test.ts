// The JUnit report as a CI system reads it: parsed by junit2json (a maintained JUnit XML parser, on
// xml2js/sax), for a passing plan, a failing one, and hostile names and output. sax is lenient (it takes
// a raw NUL or "]]>" in text), so well-formedness is also checked byte by byte against XML 1.0's rules.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { junitXml, type JUnitTest } from '../../src/cli/junit';

type Parsed = {
  name?: string;
  tests?: number;
  failures?: number;
  errors?: number;
  testsuite?: {
    name?: string;
    tests?: number;
    failures?: number;
    errors?: number;
    skipped?: number;
    time?: number;
    testcase?: {
      name?: string;
      classname?: string;
      time?: number;
      failure?: { message?: string; type?: string; inner?: string }[];
      error?: { message?: string; type?: string; inner?: string }[];
      skipped?: { message?: string }[];
      'system-out'?: string[];
      'system-err'?: string[];
    }[];
  }[];
};

async function parseJunit(xml: string): Promise<Parsed> {
  const { parse } = await import('junit2json');
  return (await parse(xml)) as Parsed;
}

/** XML 1.0 well-formedness of what a parser is most likely to trip on. */
function assertWellFormedBytes(xml: string) {
  const bytes = Buffer.from(xml, 'utf8');
  const decoded = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  assert.equal(decoded, xml, 'not valid UTF-8 (a lone surrogate was written)');
  assert.doesNotMatch(xml, /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/, 'a character XML 1.0 does not allow');
  assert.doesNotMatch(xml, /]]>/, '"]]>" in character data');
  assert.doesNotMatch(xml.replace(/^<\?xml[^>]*\?>/, ''), /<(?![/a-z!?])/, 'an unescaped "<"');
  assert.doesNotMatch(xml, /&(?!(amp|lt|gt|quot|apos|#\d+);)/, 'an unescaped "&"');
}

const test = (t: Partial<JUnitTest> & { name: string; status: string }): JUnitTest => ({ durationMs: 10, stdout: '', stderr: '', errorMessage: null, ...t });

describe('JUnit XML read by junit2json', () => {
  it('a passing plan: one testcase per test, durations in seconds, no failure', async () => {
    const xml = junitXml('nightly', [test({ name: 'a', status: 'PASSED', durationMs: 1234, stdout: 'ok a\n' }), test({ name: 'b', status: 'PASSED', durationMs: 5 })]);
    assertWellFormedBytes(xml);
    const r = await parseJunit(xml);
    assert.equal(r.tests, 2);
    assert.equal(r.failures, 0);
    const suite = r.testsuite![0];
    assert.equal(suite.name, 'nightly');
    assert.deepEqual(
      suite.testcase!.map((c) => [c.classname, c.name, c.time, c.failure, c.error, c.skipped]),
      [
        ['nightly', 'a', 1.234, undefined, undefined, undefined],
        ['nightly', 'b', 0.005, undefined, undefined, undefined],
      ],
    );
    assert.deepEqual(suite.testcase![0]['system-out'], ['ok a\n']);
    assert.equal(suite.testcase![1]['system-out'], undefined);
  });

  it('a failing plan: FAILED and TIMED_OUT are failures, ERROR an error, CANCELLED skipped; output kept', async () => {
    const xml = junitXml('ci', [
      test({ name: 'ok', status: 'PASSED' }),
      test({ name: 'bad', status: 'FAILED', errorMessage: 'exit code 1', stdout: 'running\n', stderr: 'assert failed\n  at line 3\n' }),
      test({ name: 'slow', status: 'TIMED_OUT', errorMessage: 'timed out after 5 s', durationMs: 5000 }),
      test({ name: 'broken', status: 'ERROR', errorMessage: 'environment lost (3 attempts)', durationMs: null }),
      test({ name: 'never', status: 'CANCELLED', durationMs: null }),
    ]);
    assertWellFormedBytes(xml);
    const r = await parseJunit(xml);
    const suite = r.testsuite![0];
    assert.deepEqual([suite.tests, suite.failures, suite.errors, suite.skipped], [5, 2, 1, 1]);
    assert.deepEqual([r.tests, r.failures, r.errors], [5, 2, 1]);
    const byName = Object.fromEntries(suite.testcase!.map((c) => [c.name, c]));
    assert.deepEqual(byName.bad.failure, [{ message: 'exit code 1', type: 'FAILED', inner: 'exit code 1' }]);
    assert.deepEqual(byName.bad['system-out'], ['running\n']);
    assert.deepEqual(byName.bad['system-err'], ['assert failed\n  at line 3\n']);
    assert.deepEqual(byName.slow.failure, [{ message: 'timed out after 5 s', type: 'TIMED_OUT', inner: 'timed out after 5 s' }]);
    assert.equal(byName.slow.time, 5);
    assert.equal(byName.broken.failure, undefined);
    assert.deepEqual(byName.broken.error, [{ message: 'environment lost (3 attempts)', type: 'ERROR', inner: 'environment lost (3 attempts)' }]);
    assert.equal(byName.broken.time, 0);
    assert.deepEqual(byName.never.skipped, [{ message: 'cancelled' }]);
    assert.equal(byName.ok.failure ?? byName.ok.error ?? byName.ok.skipped, undefined);
  });

  it('hostile names and output (NUL, controls, invalid UTF-8, lone surrogates, "]]>", markup, quotes): well-formed, content kept visibly', async () => {
    const invalidUtf8 = Buffer.from([0x61, 0xff, 0xfe, 0xc3, 0x28, 0x62]).toString('utf8'); // as a server's JSON would carry it: U+FFFD
    const nasty = `a\u0000b\u0001c\u001b[31md\u007f\u0085e\ufffef\ud800g\udfffh]]>i<j>&k"l'm\tn\r\no ${invalidUtf8} 🎉`;
    const xml = junitXml(`plan ${nasty}`, [
      test({ name: `name ${nasty}`, status: 'FAILED', errorMessage: `msg ${nasty}`, stdout: `out ${nasty}`, stderr: `err ${nasty}` }),
      test({ name: '</testcase><testcase name="injected">', status: 'ERROR', errorMessage: ']]><!-- -->' }),
    ]);
    assertWellFormedBytes(xml);
    const r = await parseJunit(xml);
    const suite = r.testsuite![0];
    assert.equal(suite.testcase!.length, 2, 'a name cannot add a testcase');
    const shown = `a\\u0000b\\u0001c\\u001b[31md\u007f\u0085e\\ufffef\\ud800g\\udfffh]]>i<j>&k"l'm\tn\r\no ${invalidUtf8} 🎉`;
    const c = suite.testcase![0];
    assert.equal(c.name, `name ${shown}`);
    assert.equal(c.classname, `plan ${shown}`);
    assert.equal(suite.name, `plan ${shown}`);
    assert.equal(c.failure![0].message, `msg ${shown}`);
    assert.deepEqual(c['system-out'], [`out ${shown}`]);
    assert.deepEqual(c['system-err'], [`err ${shown}`]);
    assert.equal(suite.testcase![1].name, '</testcase><testcase name="injected">');
    assert.equal(suite.testcase![1].error![0].message, ']]><!-- -->');
  });
});
