// The idempotency digest (src/domain/plan-digest.ts) and the one NUL rule (src/domain/input-strings.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { badStrings } from '../../src/domain/input-strings';
import { canonicalJson, planDigest } from '../../src/domain/plan-digest';
import type { SubmitPlanInput } from '../../src/domain/plan-input';

const base: SubmitPlanInput = { name: 'p', idempotencyKey: 'k', tests: [{ name: 'a', type: 'UNIT', script: 'true', env: [{ name: 'A', value: '1' }] }] };

describe('planDigest', () => {
  it('is the same for the same content, whatever the key order, nulls or the key itself', () => {
    const d = planDigest(base);
    assert.match(d, /^[0-9a-f]{64}$/);
    assert.equal(planDigest({ tests: [{ script: 'true', type: 'UNIT', name: 'a', env: [{ value: '1', name: 'A' }], services: null }], priority: null, name: 'p', idempotencyKey: 'other' }), d);
    assert.equal(canonicalJson({ b: 1, a: [{ d: null, c: 2 }] }), '{"a":[{"c":2}],"b":1}');
  });

  it('differs for any other content', () => {
    const d = planDigest(base);
    const t = base.tests[0];
    for (const other of [
      { ...base, name: 'q' },
      { ...base, priority: 1 },
      { ...base, tests: [{ ...t, script: 'false' }] },
      { ...base, tests: [{ ...t, env: [{ name: 'A', value: '2' }] }] },
      { ...base, tests: [t, { ...t, name: 'b' }] },
      { ...base, tests: [{ ...t, timeoutSeconds: 5 }] },
    ] as SubmitPlanInput[])
      assert.notEqual(planDigest(other), d, JSON.stringify(other));
  });
});

describe('badStrings', () => {
  const fieldsWithNul = (v: unknown) => badStrings(v).map((b) => b.field);
  it('names every string holding a NUL or an unpaired surrogate, at any depth, in order', () => {
    const input = { name: 'a\0', tests: [{ name: 'ok', services: [{ command: 'x', readyCheck: '\0' }], tags: ['t', 'u\0', '\ud800'] }], n: 3, z: null };
    assert.deepEqual(badStrings(input), [
      { field: 'name', message: 'must not contain NUL (\\u0000)' },
      { field: 'tests[0].services[0].readyCheck', message: 'must not contain NUL (\\u0000)' },
      { field: 'tests[0].tags[1]', message: 'must not contain NUL (\\u0000)' },
      { field: 'tests[0].tags[2]', message: 'must be valid Unicode text (it holds an unpaired surrogate, \\uD800 to \\uDFFF)' },
    ]);
    assert.deepEqual(fieldsWithNul({ name: 'clean é 😀', tests: [] }), []);
    assert.deepEqual(fieldsWithNul('\0'), ['(input)']);
  });

  it('reports at most 100, and walks any depth without recursion', () => {
    assert.equal(fieldsWithNul({ tests: Array.from({ length: 500 }, () => ({ script: '\0' })) }).length, 100);
    let deep: any = '\0';
    for (let i = 0; i < 10_000; i++) deep = [deep];
    assert.equal(fieldsWithNul(deep).length, 1);
  });
});
