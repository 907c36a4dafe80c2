// `orchestrator submit PLAN_FILE [--url URL] [--token TOKEN] [--wait] [--junit FILE] [--timeout SECONDS]
// [--no-cancel] [--bundle DIR|ARCHIVE]`: the CI client. Checks the plan file (JSON or YAML) with the
// server's own rules, submits it, with --wait follows it live over graphql-ws (progress.ts), prints what
// failed, writes JUnit XML, and exits 0 when every test passed (or, without --wait, once accepted), 1 when
// a test did not pass, 2 when it could not do its job (usage, bad plan file, unreachable server, HTTP or
// GraphQL error, a refused token, lost WebSocket, --timeout reached, interrupted): one line on stderr.
// The --timeout and a signal (SIGINT, SIGTERM) cancel the plan before exiting, unless --no-cancel.
// The token is sent, never printed: a message that would hold it shows "[token]" instead.

import { closeSync, constants, fstatSync, openSync, statSync, writeSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { bundleSource, uploadBundle, type BundleSource } from './bundle-upload';
import { PLAN_LIMITS } from '../domain/plan-input.schema';
import { apiClient, CliError, type ApiClient, type ClientOptions } from './api-client';
import { oneArg, UsageError, type ParsedArgs } from './args';
import { junitXml } from './junit';
import { oneLine } from './one-line';
import { readPlanFile } from './plan-file';
import { followPlan } from './follow';
import { failureDetails, Progress, type Terminal } from './progress';
import { DEFAULT_URL, SUBMIT_TIMEOUT_SECONDS } from './usage';

const SUBMIT = `mutation($input: SubmitPlanInput!) { submitPlan(input: $input) { id name status counts { total } } }`;
const PLAN = `query($id: ID!, $after: String, $full: Boolean!) { plan(id: $id) { id name status createdAt counts { passed failed timedOut error cancelled total }
  tests(first: 500, after: $after) { pageInfo { hasNextPage endCursor } nodes { name status startedAt result { durationMs stdout @include(if: $full) stderr errorMessage } } } } }`;
const CANCEL = `mutation($id: ID!) { cancelPlan(id: $id) { id status } }`;
/** How long a cancel may take once the deadline has passed or a signal came. */
const CANCEL_MS = 15_000;

export interface SubmitArgs {
  file: string;
  /** the base URL, without a trailing slash */
  url: string;
  wait: boolean;
  junit?: string;
  timeoutSeconds: number;
  /** --bundle: a directory to pack, an archive, or a bundle id; wins over the plan file's `bundle`. */
  bundle?: string;
  /** --token, else ORCHESTRATOR_TOKEN */
  token?: string;
  /** --no-cancel: leave the plan running on --timeout or a signal */
  noCancel: boolean;
}

/** A bearer token as a header can carry it: visible ASCII, no spaces. Never quoted back. */
function checkToken(token: string, from: string): string {
  if (token === '') throw new UsageError(`${from} is empty`);
  if (!/^[\x21-\x7e]+$/.test(token)) throw new UsageError(`${from} must be printable ASCII without spaces (the token is not shown)`);
  if (token.length > 4096) throw new UsageError(`${from} is longer than 4096 characters (the token is not shown)`);
  return token;
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

/** `env`: the environment (main passes process.env; only ORCHESTRATOR_TOKEN is read). */
export function submitArgs(parsed: ParsedArgs, env: { ORCHESTRATOR_TOKEN?: string } = {}): SubmitArgs {
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
    // an unset CI secret often arrives as an empty variable: that is no token
    token: typeof o.token === 'string' ? checkToken(o.token, '--token') : env.ORCHESTRATOR_TOKEN ? checkToken(env.ORCHESTRATOR_TOKEN, 'ORCHESTRATOR_TOKEN') : undefined,
    noCancel: o['no-cancel'] === true,
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

async function planOf(api: ApiClient, id: string, after: string | null, full: boolean): Promise<any> {
  const { plan } = await api.request<{ plan: any }>(PLAN, { id, after, full });
  if (!plan) throw new CliError(`plan ${id} no longer exists on ${api.url}`);
  return plan;
}

export interface SubmitIo {
  /** a line on stdout */
  out(line: string): void;
  /** where the live progress goes (stdout) */
  term: Terminal;
  /** aborted by SIGINT/SIGTERM, with the signal's name as the reason */
  stop?: AbortSignal;
}

const defaultIo = (): SubmitIo => ({
  out: (l) => console.log(l),
  term: { write: (t) => process.stdout.write(t), isTTY: process.stdout.isTTY === true, columns: process.stdout.columns },
});

/** Cancels the plan (unless --no-cancel) and says what became of it, for the one error line. */
async function giveUp(api: ApiClient, id: string, args: SubmitArgs): Promise<string> {
  if (args.noCancel) return `plan ${id} left running (--no-cancel)`;
  try {
    const { cancelPlan } = await api.request<{ cancelPlan: { status: string } }>(CANCEL, { id }, CANCEL_MS);
    return `plan ${id} cancelled (now ${oneLine(String(cancelPlan?.status), 20)})`;
  } catch (e) {
    return `plan ${id} could not be cancelled: ${(e as Error).message}`;
  }
}

/** Returns the process exit code: 0 when every test passed (or, without --wait, once accepted), 1 when one did not. */
export async function submitCommand(args: SubmitArgs, io: SubmitIo = defaultIo()): Promise<number> {
  try {
    return await submitOrThrow(args, io);
  } catch (e) {
    // whatever a server or a library put in a message, the token is not printed
    if (args.token && e instanceof Error && e.message.includes(args.token)) e.message = e.message.split(args.token).join('[token]');
    throw e;
  }
}

const signalName = (stop: AbortSignal | undefined) => String(stop?.reason ?? 'a signal');

/** `p`, or a CliError once the --timeout is reached (for a wait that has no timeout of its own). */
async function beforeDeadline<T>(p: Promise<T>, deadline: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CliError(what)), Math.max(0, deadline - Date.now()));
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

async function submitOrThrow(args: SubmitArgs, io: SubmitIo): Promise<number> {
  const startedAt = Date.now();
  const opts: ClientOptions = { timeoutSeconds: args.timeoutSeconds, deadline: startedAt + args.timeoutSeconds * 1000, token: args.token, stop: io.stop };
  const out = args.token ? (l: string) => io.out(l.split(args.token!).join('[token]')) : io.out;
  const interrupted = () => io.stop?.aborted === true;
  // the server's own rules; its test count limit is its own setting, so the server checks that
  const input = readPlanFile(args.file, { ...PLAN_LIMITS, maxTestsPerPlan: Number.MAX_SAFE_INTEGER }, undefined, { bundlePath: true }) as { bundle?: unknown };
  // --bundle is relative to the working directory, the plan's `bundle` to the plan file
  let source: BundleSource | null = null;
  if (args.bundle !== undefined) source = bundleSource(args.bundle, resolve(args.bundle), '--bundle');
  else if (typeof input.bundle === 'string') source = bundleSource(input.bundle, resolve(dirname(args.file), input.bundle), `${oneLine(args.file, 200)}: bundle`);
  if (source?.kind === 'id') input.bundle = source.id;
  else if (source) {
    const b = await uploadBundle(args.url, source, opts);
    out(`bundle ${b.id.slice(0, 19)}… ${b.files} files, ${b.sizeBytes} bytes, from ${oneLine(source.path, 200)}`);
    input.bundle = b.id;
  }
  if (interrupted()) throw new CliError(`interrupted by ${signalName(io.stop)} before the plan was submitted: nothing submitted`);
  const api = apiClient(args.url, opts);
  // with --wait the WebSocket is opened (and the token accepted on it) before the plan exists
  const subs = args.wait ? api.subscriptions() : null;
  let plan: any;
  try {
    if (subs) await beforeDeadline(subs.ready, opts.deadline, `cannot open the WebSocket ${api.wsUrl}: no answer within ${args.timeoutSeconds} s`);
    if (interrupted()) throw new CliError(`interrupted by ${signalName(io.stop)} before the plan was submitted: nothing submitted`);
    plan = (await api.request<{ submitPlan: any }>(SUBMIT, { input })).submitPlan;
  } catch (e) {
    await subs?.dispose();
    throw e;
  }
  const id = oneLine(String(plan.id), 60);
  out(`plan ${id} "${oneLine(String(plan.name), 200)}": ${plan.counts?.total} tests ${oneLine(String(plan.status), 20)}`);
  // a signal during the submission: the plan exists now, so it is cancelled like any other
  if (interrupted()) {
    await subs?.dispose();
    throw new CliError(`interrupted by ${signalName(io.stop)}: ${await giveUp(api, id, args)}`);
  }
  if (!subs) return 0;

  const progress = new Progress(io.term, startedAt);
  const follow = followPlan(api, subs, plan.id, progress);
  let deadlineTimer: NodeJS.Timeout | undefined;
  let onStop: (() => void) | undefined;
  let status: string;
  try {
    const gaveUp = new Promise<never>((_, reject) => {
      deadlineTimer = setTimeout(() => reject(new CliError(`the plan did not end within the --timeout of ${args.timeoutSeconds} s`)), Math.max(0, opts.deadline - Date.now()));
      onStop = () => reject(new CliError(`interrupted by ${signalName(io.stop)}`));
      io.stop?.addEventListener('abort', onStop, { once: true });
    });
    status = await Promise.race([follow.ended, gaveUp]);
  } catch (e) {
    progress.end();
    await follow.stop();
    const ours = e instanceof CliError && (e.message.startsWith('the plan did not end') || e.message.startsWith('interrupted by'));
    if (ours) throw new CliError(`${e.message}: ${await giveUp(api, id, args)}`);
    throw e;
  } finally {
    clearTimeout(deadlineTimer);
    if (onStop) io.stop?.removeEventListener('abort', onStop);
  }
  progress.end();
  await follow.stop();

  const tests: any[] = [];
  let after: string | null = null;
  let summary: any;
  do {
    // the plan has ended: nothing to cancel, but a signal still stops the command
    if (interrupted()) throw new CliError(`interrupted by ${signalName(io.stop)}: plan ${id} had ended ${status}; no report written`);
    summary = await planOf(api, plan.id, after, args.junit !== undefined);
    tests.push(...summary.tests.nodes);
    after = summary.tests.pageInfo.hasNextPage ? summary.tests.pageInfo.endCursor : null;
  } while (after);
  for (const line of failureDetails(tests)) out(line);
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
      startedAt: t.startedAt ?? null,
    }));
    writeReport(args.junit, junitXml(summary.name, report, { planId: summary.id, timestamp: summary.createdAt }));
    out(`JUnit XML written to ${oneLine(args.junit, 200)}`);
  }
  return status === 'PASSED' ? 0 : 1;
}
