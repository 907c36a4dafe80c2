// Plan priority to BullMQ priority, src/domain/priority.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_PLAN_PRIORITY, MIN_PLAN_PRIORITY, queuePriority } from '../../src/domain/priority';

const BULLMQ_MAX = 2 ** 21;

describe('queuePriority', () => {
  it('gives a higher plan priority a lower BullMQ number (runs first)', () => {
    for (let p = MIN_PLAN_PRIORITY; p < MAX_PLAN_PRIORITY; p++) {
      assert.ok(queuePriority(p + 1) < queuePriority(p), `${p + 1} before ${p}`);
    }
  });

  it('stays within 1..2^21 over the whole range, never 0 (0 means "no priority" to BullMQ)', () => {
    for (let p = MIN_PLAN_PRIORITY; p <= MAX_PLAN_PRIORITY; p++) {
      const q = queuePriority(p);
      assert.ok(Number.isInteger(q) && q >= 1 && q <= BULLMQ_MAX, `${p} -> ${q}`);
    }
    assert.equal(queuePriority(MAX_PLAN_PRIORITY), 1);
    assert.equal(queuePriority(0), MAX_PLAN_PRIORITY + 1);
    assert.equal(queuePriority(MIN_PLAN_PRIORITY), MAX_PLAN_PRIORITY - MIN_PLAN_PRIORITY + 1);
  });

  it('is a distinct number for each plan priority (FIFO only among equals)', () => {
    const seen = new Set<number>();
    for (let p = MIN_PLAN_PRIORITY; p <= MAX_PLAN_PRIORITY; p++) seen.add(queuePriority(p));
    assert.equal(seen.size, MAX_PLAN_PRIORITY - MIN_PLAN_PRIORITY + 1);
  });

  it('throws a RangeError outside the range or for a non-integer', () => {
    for (const bad of [MIN_PLAN_PRIORITY - 1, MAX_PLAN_PRIORITY + 1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, -Number.MAX_SAFE_INTEGER]) {
      assert.throws(() => queuePriority(bad), (e: unknown) => e instanceof RangeError && /outside -1000\.\.1000/.test(e.message), String(bad));
    }
  });
});
