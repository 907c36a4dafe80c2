// Validation of a submitted plan, src/domain/plan-input.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  artifactPathProblem,
  describeProblems,
  validatePlan,
  type FieldProblem,
  type SubmitPlanInput,
  type TestCaseInput,
  type ValidationLimits,
} from '../../src/domain/plan-input';

const limits: ValidationLimits = {
  maxFiles: 3,
  maxFileBytes: 8,
  maxFilesBytes: 12,
  maxTestsPerPlan: 5,
  maxScriptBytes: 100,
  maxTimeoutSeconds: 3600,
  maxRetries: 3,
  maxEnvVars: 2,
  maxEnvValueBytes: 10,
  maxServices: 2,
  maxArtifactPaths: 2,
  minPriority: -10,
  maxPriority: 10,
};

const unit = (name: string, extra: Partial<TestCaseInput> = {}): TestCaseInput => ({ name, type: 'UNIT', script: 'true', ...extra });
const plan = (tests: TestCaseInput[], extra: Partial<SubmitPlanInput> = {}): SubmitPlanInput => ({ name: 'p', tests, ...extra });

/** The problems for a plan of one good test then `t`, which sits at tests[1]. */
const problemsOf = (t: TestCaseInput) => validatePlan(plan([unit('ok'), t]), limits);

function expectOne(problems: FieldProblem[], field: string, test: string | undefined, message: RegExp) {
  assert.equal(problems.length, 1, JSON.stringify(problems));
  assert.equal(problems[0].field, field);
  assert.equal(problems[0].test, test);
  assert.match(problems[0].message, message);
}

describe('validatePlan: valid input', () => {
  it('gives no problem for a minimal plan', () => {
    assert.deepEqual(validatePlan(plan([unit('a')]), limits), []);
  });

  it('gives no problem for a plan using every field within its limits', () => {
    const full = plan(
      [
        unit('a', {
          type: 'INTEGRATION',
          script: 'x'.repeat(100),
          timeoutSeconds: 3600,
          maxRetries: 3,
          requirements: { kind: 'QEMU', arch: 'aarch64', cpus: 1024, memoryMb: 16 * 1024 * 1024, image: 'debian-vm', tags: ['gpu', 'linux'] },
          env: [
            { name: 'A_1', value: '0123456789' },
            { name: '_b', value: '' },
          ],
          services: [
            { name: 'db.main-1', command: 'postgres', readyCheck: 'pg_isready' },
            { name: 'cache', command: 'redis-server', readyCheck: null },
          ],
          artifactPaths: ['out/*.xml', 'logs/./a..b'],
        }),
        unit('b', { timeoutSeconds: 1, maxRetries: 0, requirements: { cpus: 1, memoryMb: 1 } }),
        unit('c'),
        unit('d'),
        unit('e'),
      ],
      { name: 'x'.repeat(200), priority: -10, idempotencyKey: 'k'.repeat(200) },
    );
    assert.deepEqual(validatePlan(full, limits), []);
    assert.deepEqual(validatePlan({ ...full, priority: 10 }, limits), []);
    assert.deepEqual(validatePlan({ ...full, priority: null, idempotencyKey: null }, limits), []);
  });
});

describe('validatePlan: the plan itself', () => {
  it('plan name: empty, blank, too long, control characters', () => {
    expectOne(validatePlan(plan([unit('a')], { name: '' }), limits), 'name', undefined, /must not be empty/);
    expectOne(validatePlan(plan([unit('a')], { name: '   ' }), limits), 'name', undefined, /must not be empty/);
    expectOne(validatePlan(plan([unit('a')], { name: 'x'.repeat(201) }), limits), 'name', undefined, /longer than 200 characters/);
    expectOne(validatePlan(plan([unit('a')], { name: 'a\nb' }), limits), 'name', undefined, /control characters/);
  });

  it('priority: outside the range or not an integer', () => {
    expectOne(validatePlan(plan([unit('a')], { priority: 11 }), limits), 'priority', undefined, /integer from -10 to 10 \(got 11\)/);
    expectOne(validatePlan(plan([unit('a')], { priority: -11 }), limits), 'priority', undefined, /got -11/);
    expectOne(validatePlan(plan([unit('a')], { priority: 1.5 }), limits), 'priority', undefined, /got 1\.5/);
  });

  it('idempotencyKey: empty or longer than 200', () => {
    expectOne(validatePlan(plan([unit('a')], { idempotencyKey: '' }), limits), 'idempotencyKey', undefined, /1 to 200 characters/);
    expectOne(validatePlan(plan([unit('a')], { idempotencyKey: 'k'.repeat(201) }), limits), 'idempotencyKey', undefined, /1 to 200/);
  });

  it('tests: none, or more than the limit (then tests are not examined one by one)', () => {
    expectOne(validatePlan(plan([]), limits), 'tests', undefined, /at least one test/);
    const tooMany = Array.from({ length: 6 }, () => unit('')); // bad names would each be a problem
    expectOne(validatePlan(plan(tooMany), limits), 'tests', undefined, /holds 6 tests, more than the limit of 5/);
  });

  it('lists every problem at once', () => {
    const problems = validatePlan(plan([unit('a', { script: '' }), unit('a', { timeoutSeconds: 0 })], { name: '', priority: 99 }), limits);
    assert.deepEqual(
      problems.map((p) => p.field),
      ['name', 'priority', 'tests[0].script', 'tests[1].name', 'tests[1].timeoutSeconds'],
    );
  });
});

describe('validatePlan: each rule of a test names tests[i].field and the test', () => {
  const cases: [string, TestCaseInput, string, RegExp][] = [
    ['empty name', unit(''), 'tests[1].name', /must not be empty/],
    ['long name', unit('n'.repeat(201)), 'tests[1].name', /longer than 200/],
    ['control character in name', unit('a\tb'), 'tests[1].name', /control characters/],
    ['repeated name', unit('ok'), 'tests[1].name', /repeats the name of tests\[0\]; names are unique within a plan/],
    ['empty script', unit('t', { script: '' }), 'tests[1].script', /must not be empty/],
    ['blank script', unit('t', { script: ' \n ' }), 'tests[1].script', /must not be empty/],
    ['script too large', unit('t', { script: 'é'.repeat(51) }), 'tests[1].script', /is 102 bytes, more than 100/],
    ['NUL in script', unit('t', { script: 'a\0b' }), 'tests[1].script', /NUL/],
    ['zero timeout', unit('t', { timeoutSeconds: 0 }), 'tests[1].timeoutSeconds', /integer from 1 to 3600 \(got 0\)/],
    ['timeout over the limit', unit('t', { timeoutSeconds: 3601 }), 'tests[1].timeoutSeconds', /got 3601/],
    ['fractional timeout', unit('t', { timeoutSeconds: 1.5 }), 'tests[1].timeoutSeconds', /got 1\.5/],
    ['negative retries', unit('t', { maxRetries: -1 }), 'tests[1].maxRetries', /integer from 0 to 3/],
    ['too many retries', unit('t', { maxRetries: 4 }), 'tests[1].maxRetries', /got 4/],
    ['zero cpus', unit('t', { requirements: { cpus: 0 } }), 'tests[1].requirements.cpus', /from 1 to 1024/],
    ['too many cpus', unit('t', { requirements: { cpus: 1025 } }), 'tests[1].requirements.cpus', /got 1025/],
    ['zero memory', unit('t', { requirements: { memoryMb: 0 } }), 'tests[1].requirements.memoryMb', /from 1 to 16777216/],
    ['bad arch', unit('t', { requirements: { arch: 'X86-64' } }), 'tests[1].requirements.arch', /architecture name/],
    ['empty arch', unit('t', { requirements: { arch: '' } }), 'tests[1].requirements.arch', /architecture name/],
    ['blank image', unit('t', { requirements: { image: ' ' } }), 'tests[1].requirements.image', /1 to 100 characters/],
    ['long image', unit('t', { requirements: { image: 'i'.repeat(101) } }), 'tests[1].requirements.image', /1 to 100 characters/],
    ['empty tag', unit('t', { requirements: { tags: ['ok', ''] } }), 'tests[1].requirements.tags[1]', /1 to 64 characters/],
    ['long tag', unit('t', { requirements: { tags: ['t'.repeat(65)] } }), 'tests[1].requirements.tags[0]', /1 to 64 characters/],
    ['too many env vars', unit('t', { env: [{ name: 'A', value: '' }, { name: 'B', value: '' }, { name: 'C', value: '' }] }), 'tests[1].env', /holds 3 variables, more than 2/],
    ['env name starting with a digit', unit('t', { env: [{ name: '1A', value: '' }] }), 'tests[1].env[0].name', /"1A" is not a valid variable name/],
    ['env name with a dash', unit('t', { env: [{ name: 'A-B', value: '' }] }), 'tests[1].env[0].name', /not a valid variable name/],
    ['reserved env name', unit('t', { env: [{ name: 'HOME', value: '/x' }] }), 'tests[1].env[0].name', /HOME is set by the environment/],
    ['env name given twice', unit('t', { env: [{ name: 'A', value: '' }, { name: 'A', value: '' }] }), 'tests[1].env[1].name', /A is given twice/],
    ['env value too long', unit('t', { env: [{ name: 'A', value: 'v'.repeat(11) }] }), 'tests[1].env[0].value', /longer than 10 bytes/],
    ['NUL in env value', unit('t', { env: [{ name: 'A', value: 'a\0' }] }), 'tests[1].env[0].value', /NUL/],
    ['too many services', unit('t', { type: 'INTEGRATION', services: ['a', 'b', 'c'].map((name) => ({ name, command: 'x' })) }), 'tests[1].services', /holds 3 services, more than 2/],
    ['services on a UNIT test', unit('t', { services: [{ name: 'db', command: 'x' }] }), 'tests[1].services', /INTEGRATION tests only, this test is UNIT/],
    ['bad service name', unit('t', { type: 'INTEGRATION', services: [{ name: '-db', command: 'x' }] }), 'tests[1].services[0].name', /1 to 63 letters/],
    ['service declared twice', unit('t', { type: 'INTEGRATION', services: [{ name: 'db', command: 'x' }, { name: 'db', command: 'y' }] }), 'tests[1].services[1].name', /service "db" is declared twice/],
    ['blank service command', unit('t', { type: 'INTEGRATION', services: [{ name: 'db', command: ' ' }] }), 'tests[1].services[0].command', /must not be empty/],
    ['blank ready check', unit('t', { type: 'INTEGRATION', services: [{ name: 'db', command: 'x', readyCheck: '' }] }), 'tests[1].services[0].readyCheck', /must not be empty when given/],
    ['too many artifact paths', unit('t', { artifactPaths: ['a', 'b', 'c'] }), 'tests[1].artifactPaths', /more than 2 paths/],
    ['empty artifact path', unit('t', { artifactPaths: [''] }), 'tests[1].artifactPaths[0]', /must not be empty/],
    ['absolute artifact path', unit('t', { artifactPaths: ['ok', '/etc/passwd'] }), 'tests[1].artifactPaths[1]', /relative to the working directory/],
    ['artifact path with ..', unit('t', { artifactPaths: ['out/../../x'] }), 'tests[1].artifactPaths[0]', /must not contain "\.\."/],
    ['long artifact path', unit('t', { artifactPaths: ['p'.repeat(1025)] }), 'tests[1].artifactPaths[0]', /longer than 1024/],
    ['NUL in artifact path', unit('t', { artifactPaths: ['a\0b'] }), 'tests[1].artifactPaths[0]', /NUL/],
  ];
  for (const [what, t, field, message] of cases) {
    it(what, () => expectOne(problemsOf(t), field, t.name, message));
  }
});

describe('artifactPathProblem', () => {
  it('accepts relative paths and globs, including names that merely contain dots', () => {
    for (const p of ['a', 'out/*.xml', './x', 'a..b/c', '.hidden', 'x/...']) assert.equal(artifactPathProblem(p), null, p);
  });
  it('refuses .. as a whole segment anywhere', () => {
    for (const p of ['..', '../x', 'a/..', 'a/../b']) assert.match(artifactPathProblem(p) ?? '', /\.\./, p);
  });
});

describe('describeProblems', () => {
  it('shows the field, the test name and the message, then how many more', () => {
    const problems: FieldProblem[] = [
      { field: 'name', message: 'must not be empty' },
      { field: 'tests[0].script', test: 'a', message: 'must not be empty' },
      { field: 'tests[1].script', test: 'b', message: 'must not be empty' },
    ];
    assert.equal(describeProblems(problems), 'name must not be empty; tests[0].script ("a") must not be empty; tests[1].script ("b") must not be empty');
    assert.equal(describeProblems(problems, 1), 'name must not be empty; and 2 more');
  });
  it('cuts long test names to 60 characters', () => {
    const text = describeProblems([{ field: 'tests[0].script', test: 'n'.repeat(100), message: 'm' }]);
    assert.equal(text, `tests[0].script ("${'n'.repeat(60)}") m`);
  });
});
