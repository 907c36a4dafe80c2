// submitPlan over HTTP GraphQL, the path a CI pipeline takes: validation, matching, one transaction for
// the plan and its tests, one BullMQ job per test.
import { gqlOk } from '../test/helpers/gql';
import { fmtMs, median, stallMonitor, timed, type Section } from './bench-kit';

const SUBMIT = `mutation($input: SubmitPlanInput!) { submitPlan(input: $input) { id status counts { queued total } } }`;

function planInput(name: string, n: number) {
  return { name, tests: Array.from({ length: n }, (_, i) => ({ name: `t${i}`, type: 'UNIT', script: 'true' })) };
}

export const apiSubmit: Section = {
  description: 'submitPlan over HTTP with 1,000 and 10,000 trivial tests: wall time and tests/s',
  async run(ctx) {
    const submit = async (name: string, n: number) => {
      const input = planInput(name, n); // built outside the timing: the client's cost, not the server's
      const { ms, result } = await timed(() => gqlOk(ctx.server.url, SUBMIT, { input }));
      const plan = result.submitPlan;
      if (plan.counts.total !== n || plan.counts.queued !== n) throw new Error(`submitPlan stored ${JSON.stringify(plan.counts)}, not ${n} queued tests`);
      return ms;
    };

    await submit('warm-up', 100); // first request: schema, JIT, connections

    for (const [n, runs] of [
      [1_000, ctx.options.runs1k],
      [10_000, ctx.options.runs10k],
    ] as const) {
      const samples: number[] = [];
      const stall = stallMonitor(); // the longest time the server could answer nobody else
      for (let i = 0; i < runs; i++) {
        samples.push(await submit(`bench-${n}-${i}`, n));
        ctx.log(`submitPlan ${n} tests, run ${i + 1}/${runs}: ${samples[i].toFixed(0)} ms`);
      }
      const stalled = await stall.stop();
      const ms = median(samples);
      ctx.record({
        key: `submit-${n}`,
        measure: `submitPlan, ${n.toLocaleString('en-US')} tests (median of ${runs})`,
        value: ms,
        unit: 'ms',
        detail: `${Math.round((n / ms) * 1000).toLocaleString('en-US')} tests/s; runs ${samples.map((s) => s.toFixed(0)).join(', ')} ms; event loop stalled up to ${fmtMs(stalled)}`,
      });
    }
  },
};
