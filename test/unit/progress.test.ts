// What submit --wait prints, on a terminal and in a CI log, from the events it is given.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { countsLine, elapsed, failureDetails, Progress, STDERR_TAIL_LINES } from '../../src/cli/progress';

function terminal(isTTY: boolean, columns = 80) {
  let text = '';
  return { term: { isTTY, columns, write: (t: string) => (text += t) }, text: () => text };
}

describe('progress output', () => {
  it('counts: the ones that are not zero, in a fixed order, with the elapsed time', () => {
    assert.equal(countsLine({ queued: 3, running: 1, passed: 5, failed: 0, timedOut: 1, error: 2, cancelled: 0, total: 12 }, 65_000), '3 queued, 1 running, 5 passed, 1 timed out, 2 errors of 12 · 1m05s');
    assert.equal(countsLine({ total: 4 }, 0), 'nothing yet of 4 · 0s');
    assert.equal(elapsed(3_725_000), '1h02m');
  });

  it('not a terminal: a plain line per status change, none rewritten, no escape sequences', () => {
    const t = terminal(false);
    const p = new Progress(t.term, 0, () => 2_000);
    p.update({ queued: 2, total: 2 });
    p.test({ id: '1', name: 'a', status: 'QUEUED', attempts: 0 }); // where every test starts: nothing
    p.test({ id: '1', name: 'a', status: 'RUNNING', attempts: 1 });
    p.test({ id: '1', name: 'a', status: 'RUNNING', attempts: 1 }); // the same change twice: once
    p.plan('RUNNING');
    p.test({ id: '1', name: 'a', status: 'QUEUED', attempts: 1 }); // handed back after a fault
    p.test({ id: '1', name: 'a', status: 'FAILED', attempts: 2, result: { durationMs: 12.4, errorMessage: 'exit code 1\n\u001b[2J' } });
    p.test({ id: '2', name: 'b\u202eevil', status: 'PASSED', attempts: 1, result: { durationMs: 3 } });
    p.end();
    assert.equal(
      t.text(),
      [
        '  RUNNING   a',
        'plan now RUNNING: 2 queued of 2 · 2s',
        '  QUEUED    a (again, after attempt 1)',
        '  FAILED    a (12 ms): exit code 1\\n\\u001b[2J',
        '  PASSED    b\\u202eevil (3 ms)',
        '',
      ].join('\n'),
    );
  });

  it('a terminal: one line rewritten in place, cut to its width; lines only for tests that did not pass', () => {
    const t = terminal(true, 40);
    let now = 0;
    const p = new Progress(t.term, 0, () => now);
    p.update({ queued: 1, running: 1, total: 2 });
    p.test({ id: '1', name: 'a', status: 'RUNNING', attempts: 1 });
    now = 5_000;
    p.test({ id: '1', name: 'a', status: 'PASSED', attempts: 1, result: { durationMs: 3 } });
    p.update({ running: 1, passed: 1, total: 2 });
    p.test({ id: '2', name: 'b', status: 'TIMED_OUT', attempts: 1, result: { durationMs: 1000, errorMessage: 'timed out' } });
    p.update({ passed: 1, timedOut: 1, total: 2 });
    p.end();
    const CLEAR = '\r\u001b[K';
    assert.equal(
      t.text(),
      [
        `${CLEAR}1 queued, 1 running of 2 · 0s`,
        `${CLEAR}1 running, 1 passed of 2 · 5s`,
        `${CLEAR}  TIMED_OUT b (1000 ms): timed out\n`,
        `${CLEAR}1 running, 1 passed of 2 · 5s`,
        `${CLEAR}1 passed, 1 timed out of 2 · 5s`,
        CLEAR,
      ].join(''),
    );
    const narrow = terminal(true, 20);
    const q = new Progress(narrow.term, 0, () => 0);
    q.update({ queued: 1000, running: 1000, passed: 1000, total: 3000 });
    q.end();
    assert.equal(narrow.text(), `${CLEAR}1000 queued, 1000 r…${CLEAR}`);
  });

  it('failure details: message, the last lines of stderr made safe, at most 50 tests', () => {
    const stderr = Array.from({ length: 30 }, (_, i) => `e${i + 1}`).join('\n') + '\n\u001b[31mred\r\n';
    const lines = failureDetails([
      { name: 'ok', status: 'PASSED', result: { stderr: 'x' } },
      { name: 'bad', status: 'FAILED', result: { errorMessage: 'exit code 1', stderr } },
      { name: 'quiet', status: 'ERROR', result: { errorMessage: 'environment lost', stderr: '' } },
    ]);
    assert.deepEqual(lines, [
      '',
      'FAILED bad: exit code 1',
      `  stderr, last ${STDERR_TAIL_LINES} of 31 lines:`,
      ...Array.from({ length: 19 }, (_, i) => `  | e${i + 12}`),
      '  | \\u001b[31mred',
      'ERROR quiet: environment lost',
      '  (nothing on stderr)',
    ]);
    assert.deepEqual(failureDetails([{ name: 'ok', status: 'PASSED' }]), []);
    const many = failureDetails(Array.from({ length: 60 }, (_, i) => ({ name: `t${i}`, status: 'TIMED_OUT', result: { stderr: 'x' } })));
    assert.equal(many[many.length - 1], '... and 10 more tests that did not pass (--junit FILE has them all)');
  });
});
