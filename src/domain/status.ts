// The test and plan state machines. Pure: no I/O.

import { TEST_STATUSES, type PlanStatus, type TestStatus } from './enums';

export { TEST_STATUSES, type PlanStatus, type TestStatus };

export const TERMINAL_STATUSES: readonly TestStatus[] = ['PASSED', 'FAILED', 'TIMED_OUT', 'ERROR', 'CANCELLED'];

export function isTerminal(status: TestStatus): boolean {
  return TERMINAL_STATUSES.includes(status);
}

const transitions: Record<TestStatus, readonly TestStatus[]> = {
  // RUNNING: a worker took it; CANCELLED: cancelTest/cancelPlan; ERROR: it can never run (e.g. its pool is gone).
  QUEUED: ['RUNNING', 'CANCELLED', 'ERROR'],
  // QUEUED: handed back after an environment fault (attempt + 1).
  RUNNING: ['PASSED', 'FAILED', 'TIMED_OUT', 'ERROR', 'CANCELLED', 'QUEUED'],
  PASSED: [],
  FAILED: [],
  TIMED_OUT: [],
  ERROR: [],
  CANCELLED: [],
};

export function canTransition(from: TestStatus, to: TestStatus): boolean {
  return transitions[from].includes(to);
}

/** The statuses a test may be in for a move to `to`: the guard of the conditional update. */
export function sourcesOf(to: TestStatus): TestStatus[] {
  return TEST_STATUSES.filter((s) => transitions[s].includes(to));
}

export type StatusCounts = Record<TestStatus, number>;

export function emptyCounts(): StatusCounts {
  return { QUEUED: 0, RUNNING: 0, PASSED: 0, FAILED: 0, TIMED_OUT: 0, ERROR: 0, CANCELLED: 0 };
}

export function totalOf(counts: StatusCounts): number {
  return TEST_STATUSES.reduce((sum, s) => sum + counts[s], 0);
}

/**
 * A plan's status from its tests: QUEUED (none started), RUNNING, PASSED (all passed), FAILED (all
 * finished, any not passed); CANCELLED once cancelPlan was called, whatever its finished tests were.
 */
export function planStatusFrom(counts: StatusCounts, cancelled: boolean): PlanStatus {
  if (cancelled) return 'CANCELLED';
  const total = totalOf(counts);
  const finished = total - counts.QUEUED - counts.RUNNING;
  if (total > 0 && finished === total) return counts.PASSED === total ? 'PASSED' : 'FAILED';
  if (counts.RUNNING > 0 || finished > 0) return 'RUNNING';
  return 'QUEUED';
}

export function isPlanFinished(status: PlanStatus): boolean {
  return status === 'PASSED' || status === 'FAILED' || status === 'CANCELLED';
}
