// The container driver against the physical limit of its stack (issue 9), at the same concurrency, in
// turns (so that other work on the machine weighs on both alike): raw `bwrap … true` with the driver's
// flags and cgroups (raw-sandbox-child.ts), and the driver alone (a RemoteDriver, as a worker runs it);
// then where a driver run's time goes (its phase timings, p50 per run). Independent of the database:
// measured once.
import { loadavg } from 'node:os';
import { resolveImage } from '../src/images/store';
import { fmtMs, table, type Section, type SectionContext } from './bench-kit';
import { BENCH_SHAPE, driverDirect, type Phases } from './driver-direct';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BUNDLE_LABEL, bundleTar, storeBundle } from './bench-bundle';
import { rawSandboxRuns } from './raw-sandbox';

const RUNS = 400;
const ROUNDS = 3;
/** Runs with the bundle, of each. */
const BUNDLE_RUNS = 200;
export const CONCURRENCY = 2;
let measured = false;

const load = () => loadavg().map((n) => n.toFixed(2)).join(' ');
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export interface SandboxFigures {
  rawPerRun: number;
  rawNoCgroups: number;
  driver: number;
  /** CPU ms per run, `host + sandbox`, median over the rounds, formatted. */
  cpu: { raw: string; rawNoCgroups: string; driver: string };
  phases: Phases;
}

type Cpu = { hostCpuMs: number; sandboxCpuMs: number };
const fmtCpu = (xs: Cpu[]) => {
  const h = median(xs.map((x) => x.hostCpuMs));
  const b = median(xs.map((x) => x.sandboxCpuMs));
  return `CPU per run ${fmtMs(h + b)} (starting process ${fmtMs(h)} + sandbox ${fmtMs(b)})`;
};

/** Raw (the driver's cgroups, no cgroups) and the driver alone, `rounds` times in turns; medians in runs/s. */
export async function measureSandbox(ctx: Pick<SectionContext, 'log'>, imageDir: string, o: { runs: number; rounds: number; concurrency: number }): Promise<SandboxFigures> {
  const resolved = await resolveImage(imageDir, BENCH_SHAPE.image);
  if (!resolved) throw new Error(`no image ${BENCH_SHAPE.image} in ${imageDir}`);
  const raw = { rootfs: resolved.rootfs, runs: o.runs, concurrency: o.concurrency, memoryMb: BENCH_SHAPE.memoryMb, cpus: BENCH_SHAPE.cpus, pids: BENCH_SHAPE.pids };
  const perRun: number[] = [];
  const noCgroups: number[] = [];
  const driver: number[] = [];
  const cpu = { raw: [] as Cpu[], rawNoCgroups: [] as Cpu[], driver: [] as Cpu[] };
  const phases: Phases = new Map();
  for (let round = 0; round < o.rounds; round++) {
    const a = await rawSandboxRuns({ ...raw, cgroups: 'per-run' });
    const b = await rawSandboxRuns({ ...raw, cgroups: 'none' });
    // phase timings on the last round only: the others measure the driver as it runs in production
    const withPhases = round === o.rounds - 1;
    const d = await driverDirect(imageDir, { runs: o.runs, concurrency: o.concurrency, phases: withPhases });
    perRun.push(a.perSecond);
    noCgroups.push(b.perSecond);
    cpu.raw.push(a);
    cpu.rawNoCgroups.push(b);
    if (!withPhases) driver.push(d.perSecond);
    if (!withPhases) cpu.driver.push(d);
    else for (const [k, v] of d.phases) phases.set(k, v);
    ctx.log(
      `round ${round + 1}: raw ${a.perSecond.toFixed(1)}/s, raw without cgroups ${b.perSecond.toFixed(1)}/s, ` +
        `driver alone ${d.perSecond.toFixed(1)}/s${withPhases ? ' (with phase timings)' : ''}; CPU ms per run (host + sandbox): ` +
        `raw ${(a.hostCpuMs + a.sandboxCpuMs).toFixed(1)}, driver ${(d.hostCpuMs + d.sandboxCpuMs).toFixed(1)} (${d.hostCpuMs.toFixed(1)} + ${d.sandboxCpuMs.toFixed(1)}); load ${load()}`,
    );
  }
  return {
    rawPerRun: median(perRun),
    rawNoCgroups: median(noCgroups),
    driver: median(driver.length ? driver : perRun.map(() => 0)),
    cpu: { raw: fmtCpu(cpu.raw), rawNoCgroups: fmtCpu(cpu.rawNoCgroups), driver: cpu.driver.length ? fmtCpu(cpu.driver) : '' },
    phases,
  };
}

/** The phases as a table: p50 and mean per sample, and the mean's share of a run + reset. */
export function phaseTable(phases: Phases): string {
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const total = (phases.get('ipc.run call') ? mean(phases.get('ipc.run call')!) : 0) + (phases.get('ipc.reset call') ? mean(phases.get('ipc.reset call')!) : 0);
  const rows = [...phases.entries()].map(([name, xs]) => [name, String(xs.length), fmtMs(median(xs)), fmtMs(mean(xs)), total ? `${((mean(xs) / total) * 100).toFixed(0)}%` : '']);
  // what the calls cost beyond the driver's own time: messages, (de)serialization, both event loops
  for (const op of ['run', 'reset']) {
    const call = phases.get(`ipc.${op} call`);
    const own = phases.get(`${op}.total`);
    if (call && own) {
      const d = mean(call) - mean(own);
      rows.push([`ipc.${op} beyond the driver (mean difference)`, '', '', fmtMs(d), total ? `${((d / total) * 100).toFixed(0)}%` : '']);
    }
  }
  return table(['phase', 'n', 'p50', 'mean', 'of run+reset'], rows, [1, 2, 3, 4]);
}

/** The breakdown as figures (p50 per run; the mean and its share of run + reset in the detail). */
export function recordPhases(ctx: Pick<SectionContext, 'record'>, phases: Phases): void {
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const total = ['ipc.run call', 'ipc.reset call'].reduce((t, k) => t + (phases.has(k) ? mean(phases.get(k)!) : 0), 0);
  for (const [name, xs] of phases) {
    const m = mean(xs);
    ctx.record({ key: `phase ${name}`, measure: `driver phase ${name}: p50 per run`, value: median(xs), unit: 'ms', detail: `mean ${fmtMs(m)}${total ? `, ${((m / total) * 100).toFixed(0)}% of run + reset` : ''}` });
  }
}

export const sandboxSpeed: Section = {
  description: 'raw bwrap+cgroups `true` vs the container driver alone, same concurrency, in turns; where a driver run goes',
  async run(ctx) {
    if (measured) return ctx.log('measured already on the first database');
    measured = true;
    const imageDir = ctx.server.core.config.imageDir;
    const loadBefore = load();
    const f = await measureSandbox(ctx, imageDir, { runs: RUNS, rounds: ROUNDS, concurrency: CONCURRENCY });
    const detail = `median of ${ROUNDS} rounds of ${RUNS} runs; load ${loadBefore} → ${load()}`;
    ctx.record({ key: 'raw', measure: `raw bwrap \`true\`: driver's flags and cgroups (made, joined, removed per run), concurrency ${CONCURRENCY}`, value: f.rawPerRun, unit: 'runs/s', detail: `${detail}; ${f.cpu.raw}` });
    ctx.record({ key: 'raw-no-cgroups', measure: `raw bwrap \`true\` without cgroups (for scale), concurrency ${CONCURRENCY}`, value: f.rawNoCgroups, unit: 'runs/s', detail: `${detail}; ${f.cpu.rawNoCgroups}` });
    ctx.record({ key: 'driver', measure: `the container driver alone (driver host), run + reset of \`true\`, concurrency ${CONCURRENCY}`, value: f.driver, unit: 'tests/s', detail: `${detail}; ${f.cpu.driver}` });
    ctx.record({ key: 'driver/raw', measure: 'driver alone / raw (goal ≥ 0.5)', value: f.driver / f.rawPerRun, unit: 'x' });
    ctx.log(`where a driver run's time goes (ms per run, driver host; ipc.* measured by the caller around each call):\n${phaseTable(f.phases)}`);
    recordPhases(ctx, f.phases);

    // With a bundle: each run's /work a private overlay over it, raw (the overlay mounted by hand) and by the driver.
    const scratch = mkdtempSync(join(tmpdir(), 'orch-bench-sandbox-bundle-'));
    try {
      const { tree } = await storeBundle(join(scratch, 'store'), bundleTar());
      const resolved = (await resolveImage(imageDir, BENCH_SHAPE.image))!;
      const raw = await rawSandboxRuns({ rootfs: resolved.rootfs, runs: BUNDLE_RUNS, concurrency: CONCURRENCY, cgroups: 'per-run', memoryMb: BENCH_SHAPE.memoryMb, cpus: BENCH_SHAPE.cpus, pids: BENCH_SHAPE.pids, bundleDir: tree });
      const d = await driverDirect(imageDir, { runs: BUNDLE_RUNS, concurrency: CONCURRENCY, bundleDir: tree });
      const withPhases = await driverDirect(imageDir, { runs: 50, concurrency: CONCURRENCY, bundleDir: tree, phases: true });
      ctx.log(`where a driver run's time goes with ${BUNDLE_LABEL} (50 runs with phase timings):\n${phaseTable(withPhases.phases)}`);
      const detail = `${BUNDLE_RUNS} runs; load ${load()}`;
      ctx.record({ key: 'raw-bundle', measure: `raw bwrap \`true\` with ${BUNDLE_LABEL} (an overlay mounted over /work per run), concurrency ${CONCURRENCY}`, value: raw.perSecond, unit: 'runs/s', detail });
      ctx.record({ key: 'driver-bundle', measure: `the driver alone with ${BUNDLE_LABEL} (RunSpec.inputs), concurrency ${CONCURRENCY}`, value: d.perSecond, unit: 'tests/s', detail });
      ctx.record({ key: 'driver-bundle/raw-bundle', measure: `driver alone / raw, with ${BUNDLE_LABEL} (goal ≥ 0.5)`, value: d.perSecond / raw.perSecond, unit: 'x' });
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  },
};
