// Validation of a submitted plan. Pure: returns every problem found, each naming the field and the test.

import { badStrings, quotable } from './input-strings';
import type { Kind, Requirements, TestType } from './matching';
import { BUNDLE_ID, fileListProblems, type FileInput, type FileLimits } from './work-files';

export interface ServiceInput {
  name: string;
  command: string;
  readyCheck?: string | null;
}
export interface EnvVarInput {
  name: string;
  value: string;
}
export interface TestCaseInput {
  name: string;
  type: TestType;
  script: string;
  timeoutSeconds?: number | null;
  requirements?: Requirements | null;
  services?: ServiceInput[] | null;
  env?: EnvVarInput[] | null;
  artifactPaths?: string[] | null;
  maxRetries?: number | null;
  /** This test's own files in its working directory (they win over the plan's and the bundle's). */
  files?: FileInput[] | null;
}
export interface SubmitPlanInput {
  name: string;
  priority?: number | null;
  tests: TestCaseInput[];
  idempotencyKey?: string | null;
  /** Id of an uploaded bundle ("sha256:…"): its files are in every test's working directory. */
  bundle?: string | null;
  /** Files for every test of the plan (they win over the bundle's). */
  files?: FileInput[] | null;
}

export interface ValidationLimits extends FileLimits {
  maxTestsPerPlan: number;
  maxScriptBytes: number;
  maxTimeoutSeconds: number;
  maxRetries: number;
  maxEnvVars: number;
  maxEnvValueBytes: number;
  maxServices: number;
  maxArtifactPaths: number;
  minPriority: number;
  maxPriority: number;
}

export interface FieldProblem {
  /** e.g. "tests[3].timeoutSeconds" */
  field: string;
  /** the test's name when the problem is inside a test */
  test?: string;
  message: string;
}

const MAX_NAME = 200;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const SERVICE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const ARCH = /^[a-z0-9_]{1,32}$/;
const RESERVED_ENV = new Set(['PATH', 'HOME', 'PWD', 'OLDPWD', 'SHLVL']);
const MAX_IDEMPOTENCY_KEY = 200;

function checkName(value: unknown, field: string, out: FieldProblem[], test?: string): void {
  if (typeof value !== 'string' || value.trim() === '') out.push({ field, test, message: 'must not be empty' });
  else if (value.length > MAX_NAME) out.push({ field, test, message: `is longer than ${MAX_NAME} characters` });
  else if (/[\u0000-\u001f\u007f]/.test(value)) out.push({ field, test, message: 'must not contain control characters' });
}

function checkIntRange(value: number | null | undefined, min: number, max: number, field: string, out: FieldProblem[], test?: string) {
  if (value === null || value === undefined) return;
  if (!Number.isInteger(value) || value < min || value > max) out.push({ field, test, message: `must be an integer from ${min} to ${max} (got ${value})` });
}

/** A relative path or glob inside the working directory. */
export function artifactPathProblem(p: string): string | null {
  if (p.trim() === '') return 'must not be empty';
  if (p.length > 1024) return 'is longer than 1024 characters';
  if (p.startsWith('/')) return 'must be relative to the working directory';
  if (p.split('/').some((seg) => seg === '..')) return 'must not contain ".."';
  if (p.includes('\0')) return 'must not contain NUL';
  return null;
}

export function validatePlan(input: SubmitPlanInput, limits: ValidationLimits): FieldProblem[] {
  // one rule for every string of the input (storable text); such a field gets that problem only
  const bad = badStrings(input);
  if (!bad.length) return checkPlan(input, limits);
  const testName = (field: string) => {
    const i = /^tests\[(\d+)\]/.exec(field)?.[1];
    const name = i === undefined ? undefined : input.tests?.[Number(i)]?.name;
    return typeof name === 'string' ? quotable(name) : undefined;
  };
  const fields = new Set(bad.map((b) => b.field));
  return [
    ...bad.map(({ field, message }) => ({ field, test: testName(field), message })),
    ...checkPlan(input, limits)
      .filter((p) => !fields.has(p.field))
      .map((p) => (p.test === undefined ? p : { ...p, test: quotable(p.test) })),
  ];
}

function checkPlan(input: SubmitPlanInput, limits: ValidationLimits): FieldProblem[] {
  const out: FieldProblem[] = [];
  checkName(input.name, 'name', out);
  checkIntRange(input.priority, limits.minPriority, limits.maxPriority, 'priority', out);
  if (input.idempotencyKey !== null && input.idempotencyKey !== undefined) {
    if (input.idempotencyKey.length === 0 || input.idempotencyKey.length > MAX_IDEMPOTENCY_KEY)
      out.push({ field: 'idempotencyKey', message: `must be 1 to ${MAX_IDEMPOTENCY_KEY} characters` });
  }
  if (input.tests.length === 0) out.push({ field: 'tests', message: 'must hold at least one test' });
  if (input.tests.length > limits.maxTestsPerPlan)
    out.push({ field: 'tests', message: `holds ${input.tests.length} tests, more than the limit of ${limits.maxTestsPerPlan}` });
  if (input.bundle !== null && input.bundle !== undefined && !BUNDLE_ID.test(input.bundle))
    out.push({ field: 'bundle', message: `must be the id of an uploaded bundle, "sha256:" and 64 hex digits as POST /bundles answers (got "${input.bundle.slice(0, 80)}")` });
  for (const p of fileListProblems(input.files ?? [], limits)) out.push({ field: `files${p.at}`, message: p.message });
  if (out.length && input.tests.length > limits.maxTestsPerPlan) return out;

  const names = new Map<string, number>();
  input.tests.forEach((t, i) => {
    const at = `tests[${i}]`;
    const test = typeof t.name === 'string' ? t.name : undefined;
    checkName(t.name, `${at}.name`, out, test);
    if (test !== undefined) {
      const first = names.get(test);
      if (first !== undefined) out.push({ field: `${at}.name`, test, message: `repeats the name of tests[${first}]; names are unique within a plan` });
      else names.set(test, i);
    }
    if (typeof t.script !== 'string' || t.script.trim() === '') out.push({ field: `${at}.script`, test, message: 'must not be empty' });
    else if (Buffer.byteLength(t.script) > limits.maxScriptBytes)
      out.push({ field: `${at}.script`, test, message: `is ${Buffer.byteLength(t.script)} bytes, more than ${limits.maxScriptBytes}` });
    checkIntRange(t.timeoutSeconds, 1, limits.maxTimeoutSeconds, `${at}.timeoutSeconds`, out, test);
    checkIntRange(t.maxRetries, 0, limits.maxRetries, `${at}.maxRetries`, out, test);

    const r = t.requirements;
    if (r) {
      checkIntRange(r.cpus, 1, 1024, `${at}.requirements.cpus`, out, test);
      checkIntRange(r.memoryMb, 1, 16 * 1024 * 1024, `${at}.requirements.memoryMb`, out, test);
      if (r.arch !== null && r.arch !== undefined && !ARCH.test(r.arch))
        out.push({ field: `${at}.requirements.arch`, test, message: 'must be an architecture name such as "x86_64" or "aarch64"' });
      if (r.image !== null && r.image !== undefined && (r.image.trim() === '' || r.image.length > 100))
        out.push({ field: `${at}.requirements.image`, test, message: 'must be 1 to 100 characters' });
      (r.tags ?? []).forEach((tag, j) => {
        if (tag.trim() === '' || tag.length > 64) out.push({ field: `${at}.requirements.tags[${j}]`, test, message: 'must be 1 to 64 characters' });
      });
    }

    const env = t.env ?? [];
    if (env.length > limits.maxEnvVars) out.push({ field: `${at}.env`, test, message: `holds ${env.length} variables, more than ${limits.maxEnvVars}` });
    const envNames = new Set<string>();
    env.forEach((v, j) => {
      const f = `${at}.env[${j}]`;
      if (!ENV_NAME.test(v.name)) out.push({ field: `${f}.name`, test, message: `"${v.name.slice(0, 40)}" is not a valid variable name (letters, digits, "_", not starting with a digit)` });
      else if (RESERVED_ENV.has(v.name)) out.push({ field: `${f}.name`, test, message: `${v.name} is set by the environment and cannot be overridden` });
      else if (envNames.has(v.name)) out.push({ field: `${f}.name`, test, message: `${v.name} is given twice` });
      envNames.add(v.name);
      if (Buffer.byteLength(v.value) > limits.maxEnvValueBytes) out.push({ field: `${f}.value`, test, message: `is longer than ${limits.maxEnvValueBytes} bytes` });
    });

    const services = t.services ?? [];
    if (services.length > limits.maxServices) out.push({ field: `${at}.services`, test, message: `holds ${services.length} services, more than ${limits.maxServices}` });
    if (services.length > 0 && t.type !== 'INTEGRATION')
      out.push({ field: `${at}.services`, test, message: `services are started for INTEGRATION tests only, this test is ${t.type}` });
    const serviceNames = new Set<string>();
    services.forEach((s, j) => {
      const f = `${at}.services[${j}]`;
      if (!SERVICE_NAME.test(s.name)) out.push({ field: `${f}.name`, test, message: 'must be 1 to 63 letters, digits, ".", "_" or "-"' });
      else if (serviceNames.has(s.name)) out.push({ field: `${f}.name`, test, message: `service "${s.name}" is declared twice` });
      serviceNames.add(s.name);
      if (s.command.trim() === '') out.push({ field: `${f}.command`, test, message: 'must not be empty' });
      if (s.readyCheck !== null && s.readyCheck !== undefined && s.readyCheck.trim() === '')
        out.push({ field: `${f}.readyCheck`, test, message: 'must not be empty when given' });
    });

    const paths = t.artifactPaths ?? [];
    if (paths.length > limits.maxArtifactPaths) out.push({ field: `${at}.artifactPaths`, test, message: `holds more than ${limits.maxArtifactPaths} paths` });
    paths.forEach((p, j) => {
      const problem = artifactPathProblem(p);
      if (problem) out.push({ field: `${at}.artifactPaths[${j}]`, test, message: problem });
    });
    for (const p of fileListProblems(t.files ?? [], limits)) out.push({ field: `${at}.files${p.at}`, test, message: p.message });
  });
  return out;
}

/** One readable line for a list of problems (the first few, then how many more). */
export function describeProblems(problems: FieldProblem[], max = 5): string {
  const shown = problems.slice(0, max).map((p) => `${p.field}${p.test !== undefined ? ` ("${p.test.slice(0, 60)}")` : ''} ${p.message}`);
  const more = problems.length > max ? `; and ${problems.length - max} more` : '';
  return `${shown.join('; ')}${more}`;
}

export type { Kind, Requirements, TestType };
