// `orchestrator submit FILE [--url URL] [--wait] [--junit OUT]`: the CI client. Submits a plan (JSON in the
// shape of SubmitPlanInput), follows it live over graphql-ws, prints each test as it finishes, writes
// JUnit XML, and exits non-zero unless every test passed.

import { readFileSync, writeFileSync } from 'node:fs';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { junitXml } from './junit';

const SUBMIT = `mutation($input: SubmitPlanInput!) { submitPlan(input: $input) { id name status counts { total } } }`;
const PLAN = `query($id: ID!, $after: String) { plan(id: $id) { id name status counts { passed failed timedOut error cancelled total }
  tests(first: 500, after: $after) { pageInfo { hasNextPage endCursor } nodes { name status result { durationMs stdout stderr errorMessage } } } } }`;
const WATCH = `subscription($id: ID) { planUpdated(id: $id) { status counts { queued running passed failed timedOut error cancelled total } } }`;
const TESTS = `subscription($id: ID) { testUpdated(planId: $id) { name status attempts result { durationMs errorMessage } } }`;

export interface SubmitArgs {
  file: string;
  url: string;
  wait: boolean;
  junit?: string;
}

export function parseSubmitArgs(argv: string[]): SubmitArgs {
  const args: SubmitArgs = { file: '', url: 'http://127.0.0.1:4000', wait: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--wait') args.wait = true;
    else if (a === '--url') args.url = argv[++i] ?? '';
    else if (a === '--junit') args.junit = argv[++i];
    else if (a.startsWith('--')) throw new Error(`submit: unknown option ${a}`);
    else if (!args.file) args.file = a;
    else throw new Error(`submit: one plan file only (got ${a})`);
  }
  if (!args.file) throw new Error('usage: orchestrator submit PLAN.json [--url http://127.0.0.1:4000] [--wait] [--junit report.xml]');
  if (!/^https?:\/\//.test(args.url)) throw new Error(`submit: --url must be an http(s) URL, not "${args.url}"`);
  return args;
}

async function gql(url: string, query: string, variables: object): Promise<any> {
  const res = await fetch(`${url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query, variables }) });
  const body = (await res.json()) as { data?: any; errors?: { message: string; extensions?: { code?: string } }[] };
  if (body.errors?.length) {
    const e = body.errors[0];
    throw new Error(`${e.extensions?.code ?? 'ERROR'}: ${e.message}`);
  }
  return body.data;
}

/** Returns the process exit code: 0 when every test passed (or, without --wait, once accepted). */
export async function submitCommand(args: SubmitArgs, out: (line: string) => void = (l) => console.log(l)): Promise<number> {
  let input: unknown;
  try {
    input = JSON.parse(readFileSync(args.file, 'utf8'));
  } catch (e) {
    throw new Error(`submit: cannot read the plan ${args.file}: ${(e as Error).message}`);
  }
  const ws = args.wait ? createClient({ url: `${args.url.replace(/^http/, 'ws')}/graphql`, webSocketImpl: WebSocket, lazy: false }) : null;
  try {
    const { submitPlan: plan } = await gql(args.url, SUBMIT, { input });
    out(`plan ${plan.id} "${plan.name}": ${plan.counts.total} tests ${plan.status}`);
    if (!args.wait || !ws) return 0;

    const finished = new Promise<string>((resolve, reject) => {
      ws.subscribe<any>({ query: TESTS, variables: { id: plan.id } }, {
        next: ({ data }) => {
          const t = data?.testUpdated;
          if (!t || t.status === 'RUNNING' || t.status === 'QUEUED') return;
          const ms = t.result?.durationMs;
          out(`  ${t.status.padEnd(9)} ${t.name}${ms !== undefined && ms !== null ? ` (${Math.round(ms)} ms)` : ''}${t.result?.errorMessage ? `: ${t.result.errorMessage}` : ''}`);
        },
        error: reject,
        complete: () => undefined,
      });
      ws.subscribe<any>({ query: WATCH, variables: { id: plan.id } }, {
        next: ({ data }) => {
          const s = data?.planUpdated?.status;
          if (s === 'PASSED' || s === 'FAILED' || s === 'CANCELLED') resolve(s);
        },
        error: reject,
        complete: () => undefined,
      });
    });
    // a plan can finish before the subscriptions are in place: poll as well, slowly
    const polled = (async () => {
      for (;;) {
        await new Promise((r) => setTimeout(r, 2_000));
        const s = (await gql(args.url, PLAN, { id: plan.id, after: null })).plan.status;
        if (s === 'PASSED' || s === 'FAILED' || s === 'CANCELLED') return s as string;
      }
    })();
    const status = await Promise.race([finished, polled]);

    const tests: any[] = [];
    let after: string | null = null;
    let summary: any;
    do {
      summary = (await gql(args.url, PLAN, { id: plan.id, after })).plan;
      tests.push(...summary.tests.nodes);
      after = summary.tests.pageInfo.hasNextPage ? summary.tests.pageInfo.endCursor : null;
    } while (after);
    const c = summary.counts;
    out(`plan ${status}: ${c.passed} passed, ${c.failed + c.timedOut} failed, ${c.error} errors, ${c.cancelled} cancelled`);
    if (args.junit) {
      writeFileSync(
        args.junit,
        junitXml(
          summary.name,
          tests.map((t) => ({ name: t.name, status: t.status, durationMs: t.result?.durationMs ?? null, stdout: t.result?.stdout ?? '', stderr: t.result?.stderr ?? '', errorMessage: t.result?.errorMessage ?? null })),
        ),
      );
      out(`JUnit XML written to ${args.junit}`);
    }
    return status === 'PASSED' ? 0 : 1;
  } finally {
    await ws?.dispose();
  }
}
