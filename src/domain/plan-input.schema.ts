// The whole check of a submitted plan as one zod schema: the shape the GraphQL API accepts for
// SubmitPlanInput (field names, types, required fields, 32-bit Int, enum values, no unknown fields), then
// the server's own rules (validatePlan). The CLI runs it on a plan file before sending anything, so the
// CLI and the server cannot disagree: the rules are the same function, the shape is tested against the
// GraphQL schema (test/unit/plan-input-schema.test.ts). Pure.

import { z } from 'zod';
import { ENVIRONMENT_KINDS, TEST_TYPES } from './enums';
import { validatePlan, type SubmitPlanInput, type ValidationLimits } from './plan-input';

/** The fixed limits of a submission. maxTestsPerPlan is the default of MAX_TESTS_PER_PLAN. */
export const PLAN_LIMITS: ValidationLimits = {
  maxTestsPerPlan: 50_000,
  maxScriptBytes: 256 * 1024,
  maxTimeoutSeconds: 86_400,
  maxRetries: 10,
  maxEnvVars: 200,
  maxEnvValueBytes: 32 * 1024,
  maxServices: 16,
  maxArtifactPaths: 100,
  minPriority: -1000,
  maxPriority: 1000,
  maxFiles: 1000,
  maxFileBytes: 1024 * 1024,
  maxFilesBytes: 8 * 1024 * 1024,
};


// GraphQL's own coercion: Int is a 32-bit signed integer, String only a string, and a single value
// where a list is expected is a list of one.
const int = z.int32();
const str = z.string();
const list = <T extends z.ZodType>(item: T) =>
  z.preprocess((v) => (v === undefined || v === null || Array.isArray(v) ? v : [v]), z.array(item));

const requirementsShape = z.strictObject({
  kind: z.enum(ENVIRONMENT_KINDS).nullish(),
  arch: str.nullish(),
  cpus: int.nullish(),
  memoryMb: int.nullish(),
  image: str.nullish(),
  tags: list(str).nullish(),
});

const serviceShape = z.strictObject({ name: str, command: str, readyCheck: str.nullish() });
const envVarShape = z.strictObject({ name: str, value: str });
const fileShape = z.strictObject({ path: str, content: str, encoding: str.nullish(), executable: z.boolean().nullish() });

const testShape = z.strictObject({
  name: str,
  type: z.enum(TEST_TYPES),
  script: str,
  timeoutSeconds: int.nullish(),
  requirements: requirementsShape.nullish(),
  services: list(serviceShape).nullish(),
  env: list(envVarShape).nullish(),
  artifactPaths: list(str).nullish(),
  maxRetries: int.nullish(),
  files: list(fileShape).nullish(),
});

/** SubmitPlanInput's shape alone, as GraphQL checks it. */
export const submitPlanShape = z.strictObject({
  name: str,
  priority: int.nullish(),
  tests: list(testShape),
  idempotencyKey: str.nullish(),
  bundle: str.nullish(),
  files: list(fileShape).nullish(),
});

/** "tests[3].env[0].name" → ["tests", 3, "env", 0, "name"] */
export function fieldPath(field: string): (string | number)[] {
  const path: (string | number)[] = [];
  for (const m of field.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) path.push(m[2] !== undefined ? Number(m[2]) : m[1]);
  return path;
}

/** ["tests", 3, "timeoutSeconds"] → "tests[3].timeoutSeconds" */
export function fieldName(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i ? '.' : ''}${String(p)}`)).join('');
}

/** The shape, then the server's rules (only once the shape holds: the rules assume the types). */
export function submitPlanSchema(limits: ValidationLimits) {
  return submitPlanShape.superRefine(
    (input, ctx) => {
      for (const p of validatePlan(input as SubmitPlanInput, limits)) ctx.addIssue({ code: 'custom', path: fieldPath(p.field), message: p.message });
    },
    { when: (payload) => payload.issues.length === 0 },
  );
}

export interface PlanIssue {
  path: (string | number)[];
  message: string;
}

const typeWords: Record<string, string> = {
  string: 'a string',
  int: 'an integer',
  number: 'an integer',
  object: 'an object (a mapping of fields)',
  array: 'a list',
  boolean: 'true or false',
};

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  if (typeof value === 'number') return Number.isInteger(value) ? `the integer ${value}` : `the number ${value}`;
  if (typeof value === 'object') return value instanceof Uint8Array ? 'binary data' : 'an object';
  if (typeof value === 'string') return 'a string';
  return typeof value === 'boolean' ? `${value}` : typeof value;
}

/** Zod's issue in the words the server would use; one issue per unknown field. */
function toPlanIssues(issue: z.core.$ZodIssue): PlanIssue[] {
  const path = issue.path.map((p) => (typeof p === 'number' ? p : String(p)));
  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys.map((k) => ({ path: [...path, k], message: 'is not a field of this input' }));
    case 'invalid_type': {
      if (issue.input === undefined) return [{ path, message: 'is required' }];
      const quoted = issue.expected === 'string' && (typeof issue.input === 'number' || typeof issue.input === 'boolean') ? ' (put it in quotes)' : '';
      return [{ path, message: `must be ${typeWords[issue.expected] ?? issue.expected}, not ${describe(issue.input)}${quoted}` }];
    }
    case 'invalid_value':
      return [{ path, message: `must be one of ${issue.values.map(String).join(', ')}${typeof issue.input === 'string' ? ` (got "${issue.input.slice(0, 40)}")` : ''}` }];
    case 'too_big':
    case 'too_small':
      return [{ path, message: 'must be a 32-bit integer (from -2147483648 to 2147483647)' }];
    default:
      return [{ path, message: issue.message }];
  }
}

/** Every problem of a submission, each with its path; empty when the server would accept it. */
export function planIssues(input: unknown, limits: ValidationLimits): PlanIssue[] {
  const result = submitPlanSchema(limits).safeParse(input, { reportInput: true });
  return result.success ? [] : result.error.issues.flatMap(toPlanIssues);
}
