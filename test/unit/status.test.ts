// The test and plan state machines of src/domain/status.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  TERMINAL_STATUSES,
  TEST_STATUSES,
  canTransition,
  emptyCounts,
  isPlanFinished,
  isTerminal,
  planStatusFrom,
  sourcesOf,
  totalOf,
  type StatusCounts,
  type TestStatus,
} from '../../src/domain/status';

const counts = (c: Partial<StatusCounts>): StatusCounts => ({ ...emptyCounts(), ...c });

describe('isTerminal', () => {
  it('is true for the finished statuses and false for QUEUED and RUNNING', () => {
    for (const s of TEST_STATUSES) assert.equal(isTerminal(s), !['QUEUED', 'RUNNING'].includes(s), s);
    assert.deepEqual([...TERMINAL_STATUSES].sort(), ['CANCELLED', 'ERROR', 'FAILED', 'PASSED', 'TIMED_OUT']);
  });
});

describe('canTransition', () => {
  const allowed: Record<TestStatus, TestStatus[]> = {
    QUEUED: ['RUNNING', 'CANCELLED', 'ERROR'],
    RUNNING: ['PASSED', 'FAILED', 'TIMED_OUT', 'ERROR', 'CANCELLED', 'QUEUED'],
    PASSED: [],
    FAILED: [],
    TIMED_OUT: [],
    ERROR: [],
    CANCELLED: [],
  };

  it('allows exactly the documented moves (every pair checked)', () => {
    for (const from of TEST_STATUSES) {
      for (const to of TEST_STATUSES) {
        assert.equal(canTransition(from, to), allowed[from].includes(to), `${from} -> ${to}`);
      }
    }
  });

  it('never leaves a terminal status and never stays in place', () => {
    for (const from of TERMINAL_STATUSES) for (const to of TEST_STATUSES) assert.equal(canTransition(from, to), false, `${from} -> ${to}`);
    for (const s of TEST_STATUSES) assert.equal(canTransition(s, s), false, s);
  });

  it('a QUEUED test cannot finish without running (no QUEUED -> PASSED/FAILED/TIMED_OUT)', () => {
    for (const to of ['PASSED', 'FAILED', 'TIMED_OUT'] as const) assert.equal(canTransition('QUEUED', to), false, to);
  });
});

describe('sourcesOf', () => {
  it('gives the guard of each conditional update', () => {
    assert.deepEqual(sourcesOf('RUNNING'), ['QUEUED']);
    assert.deepEqual(sourcesOf('QUEUED'), ['RUNNING']);
    assert.deepEqual(sourcesOf('PASSED'), ['RUNNING']);
    assert.deepEqual(sourcesOf('CANCELLED'), ['QUEUED', 'RUNNING']);
    assert.deepEqual(sourcesOf('ERROR'), ['QUEUED', 'RUNNING']);
  });
  it('agrees with canTransition for every target', () => {
    for (const to of TEST_STATUSES) {
      assert.deepEqual(sourcesOf(to), TEST_STATUSES.filter((from) => canTransition(from, to)), to);
    }
  });
});

describe('counts', () => {
  it('emptyCounts has every status at zero and totalOf sums them', () => {
    const c = emptyCounts();
    assert.deepEqual(Object.keys(c).sort(), [...TEST_STATUSES].sort());
    assert.equal(totalOf(c), 0);
    assert.equal(totalOf(counts({ QUEUED: 1, RUNNING: 2, PASSED: 3, FAILED: 4, TIMED_OUT: 5, ERROR: 6, CANCELLED: 7 })), 28);
  });
  it('emptyCounts returns a new object each time', () => {
    const a = emptyCounts();
    a.QUEUED = 5;
    assert.equal(emptyCounts().QUEUED, 0);
  });
});

describe('planStatusFrom', () => {
  const cases: [string, Partial<StatusCounts>, boolean, string][] = [
    ['no tests at all', {}, false, 'QUEUED'],
    ['all queued', { QUEUED: 3 }, false, 'QUEUED'],
    ['one running', { QUEUED: 2, RUNNING: 1 }, false, 'RUNNING'],
    ['all running', { RUNNING: 3 }, false, 'RUNNING'],
    ['one finished, rest queued (none running now)', { QUEUED: 2, PASSED: 1 }, false, 'RUNNING'],
    ['one failed, rest queued', { QUEUED: 2, FAILED: 1 }, false, 'RUNNING'],
    ['finished and running', { RUNNING: 1, PASSED: 1 }, false, 'RUNNING'],
    ['all passed', { PASSED: 4 }, false, 'PASSED'],
    ['one passed', { PASSED: 1 }, false, 'PASSED'],
    ['passed and failed', { PASSED: 3, FAILED: 1 }, false, 'FAILED'],
    ['passed and timed out', { PASSED: 3, TIMED_OUT: 1 }, false, 'FAILED'],
    ['passed and error', { PASSED: 3, ERROR: 1 }, false, 'FAILED'],
    ['passed and a cancelled test (plan not cancelled)', { PASSED: 3, CANCELLED: 1 }, false, 'FAILED'],
    ['all cancelled tests (plan not cancelled)', { CANCELLED: 2 }, false, 'FAILED'],
    ['all failed', { FAILED: 2 }, false, 'FAILED'],
    ['cancelled plan, nothing started', { QUEUED: 3 }, true, 'CANCELLED'],
    ['cancelled plan, still running', { RUNNING: 1, CANCELLED: 2 }, true, 'CANCELLED'],
    ['cancelled plan whose tests all passed', { PASSED: 3 }, true, 'CANCELLED'],
    ['cancelled plan with failures', { PASSED: 1, FAILED: 2 }, true, 'CANCELLED'],
    ['cancelled empty plan', {}, true, 'CANCELLED'],
  ];
  for (const [what, c, cancelled, expected] of cases) {
    it(`${what} -> ${expected}`, () => assert.equal(planStatusFrom(counts(c), cancelled), expected));
  }
});

describe('isPlanFinished', () => {
  it('is true for PASSED, FAILED and CANCELLED only', () => {
    assert.equal(isPlanFinished('QUEUED'), false);
    assert.equal(isPlanFinished('RUNNING'), false);
    assert.equal(isPlanFinished('PASSED'), true);
    assert.equal(isPlanFinished('FAILED'), true);
    assert.equal(isPlanFinished('CANCELLED'), true);
  });
});
