// `orchestrator submit PLAN_FILE [--url URL] [--wait] [--junit FILE] [--timeout SECONDS]`: the CI client.
// Checks the plan file (JSON or YAML) with the server's own rules, submits it, with --wait follows it
// live over graphql-ws printing each test as it finishes, writes JUnit XML, and exits 0 when every test
// passed (or, without --wait, once accepted), 1 when a test did not pass, 2 when it could not do its job
// (usage, bad plan file, unreachable server, HTTP or GraphQL error, lost WebSocket): one line on stderr.

import { closeSync, constants, fstatSync, openSync, statSync, writeSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { bundleSource, uploadBundle, type BundleSource } from './bundle-upload';
import { PLAN_LIMITS } from '../domain/plan-input.schema';
import { apiClient, CliError, type ApiClient } from './api-client';
import { oneArg, UsageError, type ParsedArgs } from './args';
import { junitXml } from './junit';
import { oneLine } from './one-line';
import { readPlanFile } from './plan-file';
import { PLAN_STATUSES } from '../domain/enums';
import { isPlanFinished } from '../domain/status';
import { DEFAULT_URL, SUBMIT_TIMEOUT_SECONDS } from './usage';

const SUBMIT = `mutation($input: SubmitPlanInput!) { submitPlan(input: $input) { id name status counts { total } } }`;
const PLAN = `query($id: ID!, $after: String) { plan(id: $id) { id name status counts { passed failed timedOut error cancelled total }
  tests(first: 500, after: $after) { pageInfo { hasNextPage endCursor } nodes { name status result { durationMs stdout stderr errorMessage } } } } }`;
const WATCH = `subscription($id: ID) { planUpdated(id: $id) { status counts { queued running passed failed timedOut error cancelled total } } }`;
const TESTS = `subscription($id: ID) { testUpdated(planId: $id) { name status attempts result { durationMs errorMessage } } }`;

/** The plan statuses a wait ends on (isPlanFinished's, as the server sends them). */
const FINAL: ReadonlySet<string> = new Set(PLAN_STATUSES.filter(isPlanFinished));
/** How often the plan is also polled over HTTP: it can end before the subscriptions are in place. */
const POLL_MS = 2_000;

export interface SubmitArgs {
  file: string;
  /** the base URL, without a trailing slash */
  url: string;
  wait: boolean;
  junit?: string;
  timeoutSeconds: number;
  /** --bundle: a directory to pack, an archive, or a bundle id; wins over the plan file's `bundle`. */
  bundle?: string;
}

/** The base URL of the API, or a UsageError: http(s), no user or password, no query. */
export function parseUrl(text: string): string {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new UsageError(`--url must be an http:// or https:// URL, not ${oneArg(text)}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`--url must be an http:// or https:// URL, not ${oneArg(text)}`);
  if (u.username || u.password) throw new UsageError('--url must not hold a user name or password');
  if (u.search || u.hash) throw new UsageError(`--url must not hold a query or fragment: ${oneArg(text)}`);
  // "/graphql" is added; a URL that already ends in it is taken as meant
  const path = u.pathname.replace(/\/+$/, '').replace(/\/graphql$/, '');
  return `${u.origin}${path}`;
}

export function submitArgs(parsed: ParsedArgs): SubmitArgs {
  const o = parsed.options;
  const timeoutText = typeof o.timeout === 'string' ? o.timeout : String(SUBMIT_TIMEOUT_SECONDS);
  const timeoutSeconds = Number(timeoutText);
  if (!/^\d+(\.\d+)?$/.test(timeoutText) || !(timeoutSeconds > 0) || timeoutSeconds > 86_400)
    throw new UsageError(`--timeout must be a number of seconds from 0.001 to 86400, not ${oneArg(timeoutText)}`);
  const args: SubmitArgs = {
    file: parsed.positionals[0],
    url: parseUrl(typeof o.url === 'string' ? o.url : DEFAULT_URL),
    wait: o.wait === true,
    junit: typeof o.junit === 'string' ? o.junit : undefined,
    timeoutSeconds,
    bundle: typeof o.bundle === 'string' ? o.bundle : undefined,
  };
  if (args.bundle === '') throw new UsageError('--bundle needs a directory, an archive or a bundle id');
  if (args.junit !== undefined && !args.wait) throw new UsageError('--junit needs --wait (the report is written when the plan has ended)');
  if (args.junit !== undefined) checkReportPath(args.junit);
  return args;
}

/** Refuses, before anything is sent, a report path that cannot be written: no directory, a directory, a FIFO. */
function checkReportPath(file: string): void {
  if (file === '') throw new UsageError('--junit needs a file name');
  const dir = dirname(file);
  try {
    if (!statSync(dir).isDirectory()) throw new UsageError(`--junit ${oneArg(file)}: ${oneArg(dir)} is not a directory`);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`--junit ${oneArg(file)}: the directory ${oneArg(dir)} does not exist`);
  }
  let st;
  try {
    st = statSync(file);
  } catch {
    return; // does not exist yet: it is created
  }
  if (!st.isFile() && !st.isCharacterDevice()) throw new UsageError(`--junit ${oneArg(file)}: is ${st.isDirectory() ? 'a directory' : 'not a regular file'}`);
}

function writeReport(file: string, xml: string): void {
  let fd: number | undefined;
  try {
    // O_NONBLOCK: a FIFO put there since the check fails instead of waiting for a reader
    fd = openSync(file, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NONBLOCK, 0o644);
    const st = fstatSync(fd);
    if (!st.isFile() && !st.isCharacterDevice()) throw new Error('is not a regular file');
    const bytes = Buffer.from(xml);
    for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off);
  } catch (e) {
    throw new CliError(`cannot write the JUnit report ${oneLine(file, 200)}: ${oneLine((e as Error).message, 200)}`);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function progressLine(t: any): string | null {
  if (!t || typeof t.status !== 'string' || t.status === 'RUNNING' || t.status === 'QUEUED') return null;
  const ms = t.result?.durationMs;
  const duration = typeof ms === 'number' ? ` (${Math.round(ms)} ms)` : '';
  const error = typeof t.result?.errorMessage === 'string' && t.result.errorMessage ? `: ${oneLine(t.result.errorMessage, 300)}` : '';
  return `  ${oneLine(t.status, 20).padEnd(9)} ${oneLine(String(t.name), 200)}${duration}${error}`;
}

async function planOf(api: ApiClient, id: string, after: string | null): Promise<any> {
  const { plan } = await api.request<{ plan: any }>(PLAN, { id, after });
  if (!plan) throw new CliError(`plan ${id} no longer exists on ${api.url}`);
  return plan;
}

/** Resolves with the plan's final status; rejects with a CliError when the connection is lost. */
function waitForEnd(api: ApiClient, id: string, out: (line: string) => void): { ended: Promise<string>; stop(): Promise<void> } {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let fail!: (e: unknown) => void;
  let done!: (status: string) => void;
  const ended = new Promise<string>((resolve, reject) => {
    done = resolve;
    fail = reject;
  });
  const subs = api.subscriptions((e) => fail(e));
  subs.client.subscribe<any>(
    { query: TESTS, variables: { id } },
    {
      next: ({ data, errors }) => {
        if (errors?.length) return subs.fail(errors);
        const line = progressLine(data?.testUpdated);
        if (line && !stopped) out(line);
      },
      error: subs.fail,
      complete: () => undefined,
    },
  );
  subs.client.subscribe<any>(
    { query: WATCH, variables: { id } },
    {
      next: ({ data, errors }) => {
        if (errors?.length) return subs.fail(errors);
        const s = data?.planUpdated?.status;
        if (FINAL.has(s)) done(s);
      },
      error: subs.fail,
      complete: () => undefined,
    },
  );
  const poll = () => {
    timer = setTimeout(() => {
      planOf(api, id, null).then(
        (p) => (FINAL.has(p.status) ? done(p.status) : stopped || poll()),
        (e: unknown) => fail(e),
      );
    }, POLL_MS);
  };
  poll();
  return {
    ended,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await subs.dispose();
    },
  };
}

/** Returns the process exit code: 0 when every test passed (or, without --wait, once accepted), 1 when one did not. */
export async function submitCommand(args: SubmitArgs, out: (line: string) => void = (l) => console.log(l)): Promise<number> {
  // the server's own rules; its test count limit is its own setting, so the server checks that
  const input = readPlanFile(args.file, { ...PLAN_LIMITS, maxTestsPerPlan: Number.MAX_SAFE_INTEGER }, undefined, { bundlePath: true }) as { bundle?: unknown };
  // --bundle is relative to the working directory, the plan's `bundle` to the plan file
  let source: BundleSource | null = null;
  if (args.bundle !== undefined) source = bundleSource(args.bundle, resolve(args.bundle), '--bundle');
  else if (typeof input.bundle === 'string') source = bundleSource(input.bundle, resolve(dirname(args.file), input.bundle), `${oneLine(args.file, 200)}: bundle`);
  if (source?.kind === 'id') input.bundle = source.id;
  else if (source) {
    const b = await uploadBundle(args.url, source, args.timeoutSeconds);
    out(`bundle ${b.id.slice(0, 19)}… ${b.files} files, ${b.sizeBytes} bytes, from ${oneLine(source.path, 200)}`);
    input.bundle = b.id;
  }
  const api = apiClient(args.url, args.timeoutSeconds);
  const { submitPlan: plan } = await api.request<{ submitPlan: any }>(SUBMIT, { input });
  out(`plan ${oneLine(String(plan.id), 60)} "${oneLine(String(plan.name), 200)}": ${plan.counts?.total} tests ${oneLine(String(plan.status), 20)}`);
  if (!args.wait) return 0;

  const watch = waitForEnd(api, plan.id, out);
  let status: string;
  try {
    status = await watch.ended;
  } finally {
    await watch.stop();
  }

  const tests: any[] = [];
  let after: string | null = null;
  let summary: any;
  do {
    summary = await planOf(api, plan.id, after);
    tests.push(...summary.tests.nodes);
    after = summary.tests.pageInfo.hasNextPage ? summary.tests.pageInfo.endCursor : null;
  } while (after);
  const c = summary.counts;
  out(`plan ${status}: ${c.passed} passed, ${c.failed + c.timedOut} failed, ${c.error} errors, ${c.cancelled} cancelled`);
  if (args.junit) {
    const report = tests.map((t) => ({
      name: t.name,
      status: t.status,
      durationMs: t.result?.durationMs ?? null,
      stdout: t.result?.stdout ?? '',
      stderr: t.result?.stderr ?? '',
      errorMessage: t.result?.errorMessage ?? null,
    }));
    writeReport(args.junit, junitXml(summary.name, report));
    out(`JUnit XML written to ${oneLine(args.junit, 200)}`);
  }
  return status === 'PASSED' ? 0 : 1;
}
