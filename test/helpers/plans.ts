// Submitting a plan through the API and waiting until it has finished: what the integration tests do
// again and again.
import { randomUUID } from 'node:crypto';
import { gqlOk, sleep } from './gql';

export const SUBMIT_PLAN = `mutation($input: SubmitPlanInput!) { submitPlan(input: $input) { id } }`;

/** Submits a plan of `tests` (and `extra` fields: priority, bundle…) named `<prefix>-<random>`; its id. */
export async function submitTests(url: string, tests: object[], extra: object = {}, prefix = 'plan'): Promise<string> {
  const { submitPlan } = await gqlOk(url, SUBMIT_PLAN, { input: { name: `${prefix}-${randomUUID().slice(0, 6)}`, tests, ...extra } });
  return submitPlan.id;
}

/** A final status, and nothing of it running or queued any more. */
export const planFinished = (plan: any): boolean =>
  ['PASSED', 'FAILED', 'CANCELLED'].includes(plan.status) && plan.counts.running === 0 && plan.counts.queued === 0;

/**
 * Polls `query` (a `plan(id: $id)` query; for the default `done`, asking its status and `counts
 * { running queued }`) until `done(plan)`; that plan.
 */
export async function waitForPlan(
  url: string,
  query: string,
  id: string,
  o: { timeoutMs?: number; everyMs?: number; done?: (plan: any) => boolean } = {},
): Promise<any> {
  const timeoutMs = o.timeoutMs ?? 90_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { plan } = await gqlOk(url, query, { id });
    if (plan && (o.done ?? planFinished)(plan)) return plan;
    if (Date.now() > deadline) throw new Error(`plan ${id} not as awaited within ${timeoutMs} ms: ${JSON.stringify(plan).slice(0, 4000)}`);
    await sleep(o.everyMs ?? 100);
  }
}

/** The plan's tests by name. */
export const testsByName = (plan: any): Record<string, any> => Object.fromEntries(plan.tests.nodes.map((t: any) => [t.name, t]));
