// The whole system against its sandbox driver alone and against the physical limit of the sandbox stack,
// side by side at the same concurrency: 1,000 trivial tests (`true`) submitted through the API and run by
// a worker (end to end), the same 1,000 sandbox runs made by the container driver alone (in a driver
// host, as a worker runs it), and 1,000 raw `bwrap … true` with the driver's flags and cgroups
// (raw-sandbox-child.ts); tests/s and ratios to the raw figure. Also the time from submitPlan's answer to
// the first RUNNING event on an idle worker. Then the same three with a 10 MB, 1,000-file bundle
// (bench-bundle.ts): uploaded with POST /bundles and named by the plan end to end, given as the runs'
// bundle to the driver alone, mounted as an overlay over /work per run raw. Printed side by side.
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveImage } from '../src/images/store';
import { gqlOk, subscribe, wsClient } from '../test/helpers/gql';
import { BUNDLE_LABEL, BUNDLE_SCRIPT, bundleTar, storeBundle } from './bench-bundle';
import { Cleanup, fmtMs, now, startTarget, stats, table, type Section } from './bench-kit';
import { BENCH_SHAPE, driverDirect } from './driver-direct';
import { rawSandboxRuns, type SandboxLoopResult } from './raw-sandbox';

const N = 1_000;
const load = () => loadavg().map((n) => n.toFixed(2)).join(' ');
const LATENCY_SAMPLES = 40;
const CAPACITY = 2;
/** The driver alone and raw, measured in turns. */
const ROUNDS = 3;
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

      // end to end: 1,000 tests through API, queue, worker, sandbox, database, events; then with a bundle
      const tar = bundleTar();
      const upload = await fetch(`${url}/bundles`, { method: 'POST', headers: { 'content-type': 'application/x-tar' }, body: tar });
      if (upload.status !== 201) throw new Error(`POST /bundles answered ${upload.status}: ${await upload.text()}`);
      const bundleId = ((await upload.json()) as { id: string }).id;
      const endToEnd = async (name: string, extra: Record<string, unknown>, script: string) => {
        const tests = Array.from({ length: N }, (_, i) => ({ name: `t${i}`, type: 'UNIT', script }));
        const plans = subscribe<any>(ws, `subscription { planUpdated { id status } }`);
        await new Promise((r) => setTimeout(r, 300));
        const t0 = now();
        const { submitPlan } = await gqlOk(url, `mutation($i: SubmitPlanInput!) { submitPlan(input: $i) { id } }`, { i: { name, tests, ...extra } });
        const done = await plans.next((p) => p.id === submitPlan.id && (p.status === 'PASSED' || p.status === 'FAILED'), 30 * 60_000);
        const ms = now() - t0;
        plans.close();
        if (done.status !== 'PASSED') throw new Error(`the throughput plan ${name} ended ${done.status}`);
        ctx.log(`end to end, ${name}: ${N} tests in ${fmtMs(ms)} (${((N / ms) * 1000).toFixed(1)} tests/s)`);
        return { ms, perSecond: (N / ms) * 1000, load: load() };
      };
      const e2e = await endToEnd('throughput', {}, 'true');
      const e2eBundle = await endToEnd('throughput-bundle', { bundle: bundleId }, BUNDLE_SCRIPT);
      await cleanup.runAll(); // stop the worker before measuring the driver alone

      const imageDir = server.core.config.imageDir;
      const resolved = await resolveImage(imageDir, BENCH_SHAPE.image);
      if (!resolved) throw new Error(`no image ${BENCH_SHAPE.image} in ${imageDir}`);
      const scratch = mkdtempSync(join(tmpdir(), 'orch-bench-worker-'));
      cleanup.add('bundle store', async () => rmSync(scratch, { recursive: true, force: true }));
      const { tree } = await storeBundle(join(scratch, 'store'), tar);
      const rawOptions = { rootfs: resolved.rootfs, runs: N, concurrency: CAPACITY, cgroups: 'per-run' as const, memoryMb: BENCH_SHAPE.memoryMb, cpus: BENCH_SHAPE.cpus, pids: BENCH_SHAPE.pids };
      // in turns, a third of the runs each round: what else the machine does weighs on all four alike
      const per = Math.ceil(N / ROUNDS);
      const rounds: Record<'alone' | 'raw' | 'aloneBundle' | 'rawBundle', SandboxLoopResult[]> = { alone: [], raw: [], aloneBundle: [], rawBundle: [] };
      for (let r = 0; r < ROUNDS; r++) {
        rounds.raw.push(await rawSandboxRuns({ ...rawOptions, runs: per }));
        rounds.alone.push(await driverDirect(imageDir, { runs: per, concurrency: CAPACITY }));
        rounds.rawBundle.push(await rawSandboxRuns({ ...rawOptions, runs: per, bundleDir: tree }));
        rounds.aloneBundle.push(await driverDirect(imageDir, { runs: per, concurrency: CAPACITY, bundleDir: tree, script: BUNDLE_SCRIPT }));
        ctx.log(`round ${r + 1}: raw ${rounds.raw[r].perSecond.toFixed(1)}, driver ${rounds.alone[r].perSecond.toFixed(1)}, raw with the bundle ${rounds.rawBundle[r].perSecond.toFixed(1)}, driver with it ${rounds.aloneBundle[r].perSecond.toFixed(1)} /s; load ${load()}`);
      }
      const mid = (xs: SandboxLoopResult[]) => [...xs].sort((a, b) => a.perSecond - b.perSecond)[Math.floor(xs.length / 2)];
      const alone = mid(rounds.alone);
      const raw = mid(rounds.raw);
      const aloneBundle = mid(rounds.aloneBundle);
      const rawBundle = mid(rounds.rawBundle);
      const loadDirect = load();
      const cpu = (x: { hostCpuMs: number; sandboxCpuMs: number }) => `CPU per run ${fmtMs(x.hostCpuMs + x.sandboxCpuMs)} (starting process ${fmtMs(x.hostCpuMs)} + sandbox ${fmtMs(x.sandboxCpuMs)})`;
      ctx.record({ key: 'e2e', measure: `${N} tests of \`true\` end to end, concurrency ${CAPACITY}, no bundle`, value: e2e.perSecond, unit: 'tests/s', detail: `${fmtMs(e2e.ms)} from submitPlan to the plan's PASSED event; load after ${e2e.load}` });
      ctx.record({ key: 'direct', measure: `the same ${N} sandbox runs by the driver alone, concurrency ${CAPACITY}, no bundle`, value: alone.perSecond, unit: 'tests/s', detail: `median of ${ROUNDS} rounds in turns with raw; run + reset each; ${cpu(alone)}; load after ${loadDirect}` });
      ctx.record({ key: 'raw', measure: `${N} raw bwrap \`true\` with the driver's flags and cgroups, concurrency ${CAPACITY}`, value: raw.perSecond, unit: 'runs/s', detail: `median of ${ROUNDS} rounds; ${cpu(raw)}` });
      ctx.record({ key: 'ratio', measure: 'throughput ratio: end to end / driver alone (goal ≥ 0.8)', value: e2e.perSecond / alone.perSecond, unit: 'x' });
      ctx.record({ key: 'direct/raw', measure: 'throughput ratio: driver alone / raw (goal ≥ 0.5)', value: alone.perSecond / raw.perSecond, unit: 'x' });
      ctx.record({ key: 'e2e/raw', measure: 'throughput ratio: end to end / raw', value: e2e.perSecond / raw.perSecond, unit: 'x' });
      ctx.record({ key: 'e2e-bundle', measure: `${N} tests of the bundle's script end to end with ${BUNDLE_LABEL}, concurrency ${CAPACITY}`, value: e2eBundle.perSecond, unit: 'tests/s', detail: `${fmtMs(e2eBundle.ms)}; load after ${e2eBundle.load}` });
      ctx.record({ key: 'direct-bundle', measure: `the driver alone with ${BUNDLE_LABEL}, concurrency ${CAPACITY}`, value: aloneBundle.perSecond, unit: 'tests/s', detail: `median of ${ROUNDS} rounds; ${cpu(aloneBundle)}` });
      ctx.record({ key: 'raw-bundle', measure: `raw bwrap \`true\` with ${BUNDLE_LABEL} (an overlay mounted over /work per run), concurrency ${CAPACITY}`, value: rawBundle.perSecond, unit: 'runs/s', detail: `median of ${ROUNDS} rounds; the layers on a tmpfs; ${cpu(rawBundle)}` });
      ctx.record({ key: 'direct-bundle/raw-bundle', measure: `throughput ratio with ${BUNDLE_LABEL}: driver alone / raw (goal ≥ 0.5)`, value: aloneBundle.perSecond / rawBundle.perSecond, unit: 'x' });
      ctx.record({ key: 'e2e-bundle/raw-bundle', measure: `throughput ratio with ${BUNDLE_LABEL}: end to end / raw`, value: e2eBundle.perSecond / rawBundle.perSecond, unit: 'x' });
      const row = (label: string, x: number, r: number) => [label, x.toFixed(1), `${(x / r).toFixed(2)}x`];
      ctx.log(
        `side by side, concurrency ${CAPACITY}, ${N} runs each (tests/s, the driver and raw medians of ${ROUNDS} rounds in turns; ratio to raw of the same column):\n` +
          table(
            ['', 'no bundle', 'ratio', `with ${BUNDLE_LABEL}`, 'ratio'],
            [
              [...row('raw bwrap + cgroups', raw.perSecond, raw.perSecond), ...row('', rawBundle.perSecond, rawBundle.perSecond).slice(1)],
              [...row('the driver alone', alone.perSecond, raw.perSecond), ...row('', aloneBundle.perSecond, rawBundle.perSecond).slice(1)],
              [...row('end to end', e2e.perSecond, raw.perSecond), ...row('', e2eBundle.perSecond, rawBundle.perSecond).slice(1)],
            ],
            [1, 2, 3, 4],
          ),
      );
    } finally {
      await cleanup.runAll();
    }
  },
};
