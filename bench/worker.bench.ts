// The whole system against its sandbox driver alone and against the physical limit of the sandbox stack,
// side by side at the same concurrency: 1,000 trivial tests (`true`) submitted through the API and run by
// a worker (end to end), the same 1,000 sandbox runs made by the container driver alone (in a driver
// host, as a worker runs it), and 1,000 raw `bwrap … true` with the driver's flags and cgroups
// (raw-sandbox-child.ts); tests/s and ratios to the raw figure. Also the time from submitPlan's answer to
// the first RUNNING event on an idle worker. With a bundle: see sandbox.bench.ts (a stand-in until
// bundles are merged) and the TODO below.
import { loadavg } from 'node:os';
import { resolveImage } from '../src/images/store';
import { gqlOk, subscribe, wsClient } from '../test/helpers/gql';
import { Cleanup, fmtMs, now, startTarget, stats, type Section } from './bench-kit';
import { BENCH_SHAPE, driverDirect } from './driver-direct';
import { rawSandboxRuns } from './raw-sandbox';

const N = 1_000;
const load = () => loadavg().map((n) => n.toFixed(2)).join(' ');
const LATENCY_SAMPLES = 40;
const CAPACITY = 2;
const POOLS = JSON.stringify([
  { name: 'container', kind: 'CONTAINER', cpus: 1, memoryMb: 256, image: 'debian-bookworm', capacity: CAPACITY, pids: 64, testTypes: ['UNIT'] },
]);

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

      const loadE2e = load();

      const imageDir = server.core.config.imageDir;
      const alone = await driverDirect(imageDir, { runs: N, concurrency: CAPACITY });
      const loadDirect = load();
      const resolved = await resolveImage(imageDir, BENCH_SHAPE.image);
      if (!resolved) throw new Error(`no image ${BENCH_SHAPE.image} in ${imageDir}`);
      const raw = await rawSandboxRuns({ rootfs: resolved.rootfs, runs: N, concurrency: CAPACITY, cgroups: 'per-run', memoryMb: BENCH_SHAPE.memoryMb, cpus: BENCH_SHAPE.cpus, pids: BENCH_SHAPE.pids });
      const loadRaw = load();
      const cpu = (x: { hostCpuMs: number; sandboxCpuMs: number }) => `CPU per run ${fmtMs(x.hostCpuMs + x.sandboxCpuMs)} (starting process ${fmtMs(x.hostCpuMs)} + sandbox ${fmtMs(x.sandboxCpuMs)})`;
      ctx.record({ key: 'e2e', measure: `${N} tests of \`true\` end to end, concurrency ${CAPACITY}, no bundle`, value: e2e, unit: 'tests/s', detail: `${fmtMs(e2eMs)} from submitPlan to the plan's PASSED event; load after ${loadE2e}` });
      ctx.record({ key: 'direct', measure: `the same ${N} sandbox runs by the driver alone, concurrency ${CAPACITY}, no bundle`, value: alone.perSecond, unit: 'tests/s', detail: `${fmtMs(alone.ms)} (run + reset each); ${cpu(alone)}; load after ${loadDirect}` });
      ctx.record({ key: 'raw', measure: `${N} raw bwrap \`true\` with the driver's flags and cgroups, concurrency ${CAPACITY}`, value: raw.perSecond, unit: 'runs/s', detail: `${fmtMs(raw.ms)}; ${cpu(raw)}; load after ${loadRaw}` });
      ctx.record({ key: 'ratio', measure: 'throughput ratio: end to end / driver alone (goal ≥ 0.8)', value: e2e / alone.perSecond, unit: 'x' });
      ctx.record({ key: 'direct/raw', measure: 'throughput ratio: driver alone / raw (goal ≥ 0.5)', value: alone.perSecond / raw.perSecond, unit: 'x' });
      ctx.record({ key: 'e2e/raw', measure: 'throughput ratio: end to end / raw', value: e2e / raw.perSecond, unit: 'x' });
      // TODO (after merging bundles): the same three with a 10 MB, 1,000-file bundle: a plan with
      // SubmitPlanInput.bundle end to end, RunSpec's bundle for the driver alone; raw with the bundle's
      // files in its work dir as the driver puts them (sandbox.bench.ts has a plain-copy stand-in).
    } finally {
      await cleanup.runAll();
    }
  },
};
