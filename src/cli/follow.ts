// Follows a submitted plan until it ends: the testUpdated and planUpdated subscriptions over graphql-ws
// feed the progress output, and a poll over HTTP every few seconds catches what the subscriptions cannot
// (a plan that ended before they were in place). A lost WebSocket ends the wait with a CliError.

import { isPlanFinished } from '../domain/status';
import { PLAN_STATUSES } from '../domain/enums';
import { CliError, type ApiClient, type Subscriptions } from './api-client';
import type { Progress } from './progress';

const WATCH = `subscription($id: ID) { planUpdated(id: $id) { status counts { queued running passed failed timedOut error cancelled total } } }`;
const TESTS = `subscription($id: ID) { testUpdated(planId: $id) { id name status attempts result { durationMs errorMessage } } }`;
const STATE = `query($id: ID!) { plan(id: $id) { status counts { queued running passed failed timedOut error cancelled total } } }`;

/** The plan statuses a wait ends on (isPlanFinished's, as the server sends them). */
export const FINAL: ReadonlySet<string> = new Set(PLAN_STATUSES.filter(isPlanFinished));
/** How often the plan is also polled over HTTP. */
const POLL_MS = 2_000;

export interface Following {
  /** the plan's final status; rejects with a CliError when the connection is lost */
  ended: Promise<string>;
  stop(): Promise<void>;
}

/** `subs`: connected already (api.subscriptions()); disposed by stop(). */
export function followPlan(api: ApiClient, subs: Subscriptions, id: string, progress: Progress): Following {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let fail!: (e: unknown) => void;
  let done!: (status: string) => void;
  let lastStatus: string | undefined;
  const ended = new Promise<string>((resolve, reject) => {
    done = resolve;
    fail = reject;
  });
  ended.catch(() => undefined); // handled by the caller's await; a rejection after stop() is not an error
  const planState = (p: { status?: unknown; counts?: unknown } | null | undefined) => {
    if (stopped || !p || typeof p.status !== 'string') return;
    if (p.counts && typeof p.counts === 'object') progress.update(p.counts);
    if (p.status !== lastStatus) {
      // the first QUEUED was said at submission, the final status is said by the summary
      if (!FINAL.has(p.status) && !(lastStatus === undefined && p.status === 'QUEUED')) progress.plan(p.status);
      lastStatus = p.status;
    }
    if (FINAL.has(p.status)) done(p.status);
  };
  subs.onError((e) => fail(e));
  subs.client.subscribe<any>(
    { query: TESTS, variables: { id } },
    {
      next: ({ data, errors }) => {
        if (errors?.length) return subs.fail(errors);
        if (!stopped && data?.testUpdated) progress.test(data.testUpdated);
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
        planState(data?.planUpdated);
      },
      error: subs.fail,
      complete: () => undefined,
    },
  );
  const poll = (delay: number) => {
    timer = setTimeout(() => {
      api.request<{ plan: any }>(STATE, { id }).then(
        ({ plan }) => {
          if (!plan) return fail(new CliError(`plan ${id} no longer exists on ${api.url}`));
          planState(plan);
          if (!stopped && !FINAL.has(plan.status)) poll(POLL_MS);
        },
        (e: unknown) => fail(e),
      );
    }, delay);
  };
  poll(0); // the counts at once, then every POLL_MS
  return {
    ended,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await subs.dispose();
    },
  };
}
