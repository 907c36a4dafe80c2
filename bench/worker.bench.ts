// The whole system against its sandbox driver alone: 1,000 trivial tests (`true`) submitted through the
// API and run by a worker, against the same 1,000 sandbox runs made directly by the container driver at
// the same concurrency; and the time from submitPlan's answer to the first RUNNING event on an idle worker.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RemoteDriver } from '../src/environments/remote/remote.driver';
import type { EnvironmentShape, RunSpec } from '../src/environments/driver';
import { gqlOk, subscribe, wsClient } from '../test/helpers/gql';
import { Cleanup, fmtMs, now, startTarget, stats, type Section } from './bench-kit';

const N = 1_000;
const LATENCY_SAMPLES = 40;
const CAPACITY = 2;
const POOLS = JSON.stringify([
  { name: 'container', kind: 'CONTAINER', cpus: 1, memoryMb: 256, image: 'debian-bookworm', capacity: CAPACITY, pids: 64, testTypes: ['UNIT'] },
]);

async function driverDirect(imageDir: string, runs: number, concurrency: number): Promise<number> {
  const scratch = mkdtempSync(join(tmpdir(), 'orch-bench-driver-'));
  // the driver as a worker runs it (in a driver host process): forking from this process, which has
  // held databases, would make the driver alone look slower than it is
  const driver = new RemoteDriver('CONTAINER', { imageDir }, { info() {}, warn() {}, error() {} });

  const shape: EnvironmentShape = { pool: 'container', kind: 'CONTAINER', arch: 'x86_64', cpus: 1, memoryMb: 256, image: 'debian-bookworm', pids: 64 };
  await driver.preflight(shape);
  const envs = await Promise.all(Array.from({ length: concurrency }, () => driver.provision(randomUUID(), shape)));
  let next = 0;
  const t0 = now();
  await Promise.all(
    envs.map(async (env) => {
      while (next < runs) {
        next++;
        const spec: RunSpec = { testId: randomUUID(), attempt: 1, script: 'true', env: {}, timeoutMs: 60_000, services: [], artifactPaths: [], artifactDir: join(scratch, 'a'), maxOutputBytes: 1 << 20 };
        const o = await driver.run(env, spec);
        if (o.exitCode !== 0) throw new Error(`direct run failed: ${JSON.stringify(o).slice(0, 300)}`);
        await driver.reset(env);
      }
    }),
  );
  const ms = now() - t0;
  await Promise.all(envs.map((e) => driver.destroy(e)));
  await driver.close();
  rmSync(scratch, { recursive: true, force: true });
  return ms;
}

export const workerThroughput: Section = {
  description: `${N} trivial tests end to end vs the driver alone at the same concurrency (ratio), and submit→RUNNING latency`,
  async run(ctx) {
    // its own server with a worker: the other sections leave thousands of queued jobs behind
    const cleanup = new Cleanup();
    try {
      const { server } = await startTarget(ctx.database, cleanup, { worker: true, env: { POOLS } });
      const url = server.url;
      const ws = wsClient(url);
      cleanup.add('ws client', async () => {
        await ws.dispose();
      });

      // latency first, on an idle worker: one single-test plan at a time
      const updates = subscribe<any>(ws, `subscription { testUpdated { planId status } }`);
      await new Promise((r) => setTimeout(r, 300));
      const latencies: number[] = [];
      for (let i = 0; i < LATENCY_SAMPLES + 3; i++) {
        const { submitPlan } = await gqlOk(url, `mutation($i: SubmitPlanInput!) { submitPlan(input: $i) { id } }`, { i: { name: `lat-${i}`, tests: [{ name: 't', type: 'UNIT', script: 'true' }] } });
        const answered = now();
        await updates.next((u) => u.planId === submitPlan.id && u.status === 'RUNNING', 30_000);
        if (i >= 3) latencies.push(now() - answered); // the first few warm the paths up
        await updates.next((u) => u.planId === submitPlan.id && u.status === 'PASSED', 30_000);
      }
      updates.close();
      const lat = stats(latencies);
      ctx.record({
        key: 'to-running',
        measure: `submitPlan answered → RUNNING event, idle worker (${LATENCY_SAMPLES} plans): p50`,
        value: lat.p50,
        unit: 'ms',
        detail: `p99 ${fmtMs(lat.p99)}, max ${fmtMs(lat.max)}`,
      });

      // end to end: 1,000 tests through API, queue, worker, sandbox, database, events
      const tests = Array.from({ length: N }, (_, i) => ({ name: `t${i}`, type: 'UNIT', script: 'true' }));
      const plans = subscribe<any>(ws, `subscription { planUpdated { id status } }`);
      await new Promise((r) => setTimeout(r, 300));
      const t0 = now();
      const { submitPlan } = await gqlOk(url, `mutation($i: SubmitPlanInput!) { submitPlan(input: $i) { id } }`, { i: { name: 'throughput', tests } });
      const done = await plans.next((p) => p.id === submitPlan.id && (p.status === 'PASSED' || p.status === 'FAILED'), 30 * 60_000);
      const e2eMs = now() - t0;
      plans.close();
      if (done.status !== 'PASSED') throw new Error(`the throughput plan ended ${done.status}`);
      const e2e = (N / e2eMs) * 1000;
      ctx.log(`end to end: ${N} tests in ${fmtMs(e2eMs)} (${e2e.toFixed(1)} tests/s)`);
      await cleanup.runAll(); // stop the worker before measuring the driver alone

      const directMs = await driverDirect(server.core.config.imageDir, N, CAPACITY);
      const direct = (N / directMs) * 1000;
      ctx.record({ key: 'e2e', measure: `${N} tests of \`true\` end to end, concurrency ${CAPACITY}`, value: e2e, unit: 'tests/s', detail: `${fmtMs(e2eMs)} from submitPlan to the plan's PASSED event` });
      ctx.record({ key: 'direct', measure: `the same ${N} sandbox runs by the driver alone, concurrency ${CAPACITY}`, value: direct, unit: 'tests/s', detail: `${fmtMs(directMs)} (run + reset each)` });
      ctx.record({ key: 'ratio', measure: 'throughput ratio: end to end / driver alone (goal ≥ 0.8)', value: e2e / direct, unit: 'x', detail: `${(e2e / direct).toFixed(2)}` });
    } finally {
      await cleanup.runAll();
    }
  },
};
