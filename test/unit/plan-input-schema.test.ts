// The CLI's check of a plan (src/domain/plan-input.schema.ts) must agree with the server: its shape with
// GraphQL's coercion of SubmitPlanInput in schema.graphql, its rules with validatePlan.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { buildSchema, coerceInputValue, GraphQLInputObjectType, GraphQLNonNull, getNullableType, isListType, isInputObjectType, type GraphQLInputType } from 'graphql';
import { describeProblems, validatePlan, type SubmitPlanInput } from '../../src/domain/plan-input';
import { fieldName, fieldPath, planIssues, PLAN_LIMITS, submitPlanShape } from '../../src/domain/plan-input.schema';

const sdl = readFileSync(join(resolve(__dirname, '../../..'), 'schema.graphql'), 'utf8');
const gqlSchema = buildSchema(sdl);
const inputType = gqlSchema.getType('SubmitPlanInput') as GraphQLInputObjectType;

/** What the GraphQL server does with these variables: accepts (true) or refuses them. */
function graphqlAccepts(value: unknown): boolean {
  let ok = true;
  coerceInputValue(value, new GraphQLNonNull(inputType), () => {
    ok = false;
  });
  return ok;
}

const test = { name: 'a', type: 'UNIT', script: 'true' };
const plan = (t: object = test, extra: object = {}) => ({ name: 'p', tests: [t], ...extra });

// inputs that differ from a good plan in one way each: the shape must say what GraphQL says of each
const corpus: [string, unknown][] = [
  ['a good plan', plan()],
  ['every field', plan({ ...test, timeoutSeconds: 5, maxRetries: 1, artifactPaths: ['x'], env: [{ name: 'A', value: 'b' }], services: [{ name: 's', command: 'c', readyCheck: null }], requirements: { kind: 'QEMU', arch: 'x86_64', cpus: 2, memoryMb: 1, image: 'i', tags: ['t'] } }, { priority: 1, idempotencyKey: 'k' })],
  ['nulls in nullable fields', plan({ ...test, timeoutSeconds: null, requirements: null, services: null, env: null, artifactPaths: null, maxRetries: null }, { priority: null, idempotencyKey: null })],
  ['a single value for a list', plan({ ...test, artifactPaths: 'x', requirements: { tags: 't' } })],
  ['a single test for the list of tests', { name: 'p', tests: test }],
  ['no tests field', { name: 'p' }],
  ['no name', { tests: [test] }],
  ['null name', plan(test, { name: null })],
  ['a number for a string', plan({ ...test, script: 42 })],
  ['a boolean for a string', plan({ ...test, name: true })],
  ['a string for an Int', plan({ ...test, timeoutSeconds: '5' })],
  ['a float for an Int', plan({ ...test, timeoutSeconds: 1.5 })],
  ['an Int beyond 32 bits', plan({ ...test, timeoutSeconds: 2 ** 31 })],
  ['the smallest 32-bit Int', plan(test, { priority: -(2 ** 31) })],
  ['Infinity for an Int', plan({ ...test, maxRetries: Infinity })],
  ['a lower-case enum', plan({ ...test, type: 'unit' })],
  ['an unknown enum value', plan({ ...test, requirements: { kind: 'VM' } })],
  ['an unknown field of a test', plan({ ...test, timeout: 5 })],
  ['an unknown field of the plan', plan(test, { extra: 1 })],
  ['an unknown field of requirements', plan({ ...test, requirements: { gpu: true } })],
  ['a null in a list', plan({ ...test, artifactPaths: ['x', null] })],
  ['a null test', { name: 'p', tests: [null] }],
  ['a list for an object', plan({ ...test, requirements: [] })],
  ['a string for an object', plan({ ...test, requirements: 'big' })],
  ['a list for the plan', [plan()]],
  ['null for the plan', null],
  ['env without value', plan({ ...test, env: [{ name: 'A' }] })],
  ['service without command', plan({ ...test, type: 'INTEGRATION', services: [{ name: 's' }] })],
  ['an object for a string', plan({ ...test, script: { run: 'x' } })],
  ['files and a bundle', plan({ ...test, files: [{ path: 'a', content: 'x', encoding: 'base64', executable: true }] }, { bundle: 'sha256:x', files: [{ path: 'b', content: '' }] })],
  ['a single file for the list of files', plan(test, { files: { path: 'b', content: 'x' } })],
  ['a file without content', plan(test, { files: [{ path: 'b' }] })],
  ['a string for a Boolean', plan(test, { files: [{ path: 'b', content: 'x', executable: 'true' }] })],
  ['a number for a Boolean', plan(test, { files: [{ path: 'b', content: 'x', executable: 1 }] })],
  ['an unknown field of a file', plan(test, { files: [{ path: 'b', content: 'x', mode: 493 }] })],
  ['a number for the bundle', plan(test, { bundle: 5 })],
];

describe('submitPlanShape agrees with GraphQL on SubmitPlanInput', () => {
  for (const [what, value] of corpus) {
    it(what, () => {
      assert.equal(submitPlanShape.safeParse(value).success, graphqlAccepts(value), JSON.stringify(value));
    });
  }

  it('knows every field of every input type, with the same required fields', () => {
    const shapeOf = (s: any): Record<string, any> => s.shape;
    const unwrapZod = (s: any): any => {
      for (;;) {
        const def = s?._zod?.def;
        if (!def) return s;
        if (def.type === 'optional' || def.type === 'nullable') s = def.innerType;
        else if (def.type === 'pipe') s = def.out; // the list preprocess
        else if (def.type === 'array') s = def.element;
        else return s;
      }
    };
    const compare = (gql: GraphQLInputObjectType, zodObject: any, where: string) => {
      const fields = gql.getFields();
      const shape = shapeOf(zodObject);
      assert.deepEqual(Object.keys(shape).sort(), Object.keys(fields).sort(), `${where}: the fields`);
      for (const [name, f] of Object.entries(fields)) {
        const required = f.type instanceof GraphQLNonNull;
        assert.equal(shape[name].safeParse(undefined).success, !required, `${where}.${name}: required`);
        let t: GraphQLInputType = getNullableType(f.type);
        if (isListType(t)) t = getNullableType(t.ofType);
        if (isInputObjectType(t)) compare(t, unwrapZod(shape[name]), `${where}.${name}`);
      }
    };
    compare(inputType, submitPlanShape, 'SubmitPlanInput');
  });
});

describe('planIssues', () => {
  it('gives the server\'s rules (validatePlan) with their paths once the shape holds', () => {
    const input = { name: 'p', tests: [test, { ...test, name: 'b', timeoutSeconds: 100_000 }, { ...test, name: 'a', env: [{ name: 'PATH', value: 'x' }] }] };
    const problems = validatePlan(input as SubmitPlanInput, PLAN_LIMITS);
    assert.equal(problems.length, 3, describeProblems(problems));
    assert.deepEqual(
      planIssues(input, PLAN_LIMITS),
      problems.map((p) => ({ path: fieldPath(p.field), message: p.message })),
    );
    assert.deepEqual(planIssues(input, PLAN_LIMITS)[0], { path: ['tests', 1, 'timeoutSeconds'], message: 'must be an integer from 1 to 86400 (got 100000)' });
  });

  it('gives shape problems in words, one per unknown field, and the rules only once the shape holds', () => {
    assert.deepEqual(planIssues(plan({ ...test, type: 'unit', script: 7, timeout: 5, retries: 1 }), PLAN_LIMITS), [
      { path: ['tests', 0, 'type'], message: 'must be one of UNIT, INTEGRATION, PERFORMANCE, SECURITY (got "unit")' },
      { path: ['tests', 0, 'script'], message: 'must be a string, not the integer 7 (put it in quotes)' },
      { path: ['tests', 0, 'timeout'], message: 'is not a field of this input' },
      { path: ['tests', 0, 'retries'], message: 'is not a field of this input' },
    ]);
    assert.deepEqual(planIssues({ tests: [] }, PLAN_LIMITS), [{ path: ['name'], message: 'is required' }]);
    assert.deepEqual(planIssues(plan({ ...test, timeoutSeconds: 2 ** 40 }), PLAN_LIMITS), [
      { path: ['tests', 0, 'timeoutSeconds'], message: 'must be a 32-bit integer (from -2147483648 to 2147483647)' },
    ]);
    assert.deepEqual(planIssues(plan({ ...test, maxRetries: 0.5 }), PLAN_LIMITS), [{ path: ['tests', 0, 'maxRetries'], message: 'must be an integer, not the number 0.5' }]);
    assert.deepEqual(planIssues([1], PLAN_LIMITS), [{ path: [], message: 'must be an object (a mapping of fields), not a list' }]);
  });
});

describe('fieldPath and fieldName', () => {
  for (const f of ['name', 'tests', 'tests[3].timeoutSeconds', 'tests[0].env[12].name', 'tests[1].requirements.tags[0]']) {
    it(f, () => assert.equal(fieldName(fieldPath(f)), f));
  }
  it('splits into keys and indexes', () => assert.deepEqual(fieldPath('tests[3].env[0].name'), ['tests', 3, 'env', 0, 'name']));
});
