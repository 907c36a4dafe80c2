// Benchmarks: figures and ratios, never assertions on timings.
//
//   npm run bench                                  every section on every database
//   node dist/bench/run.js status-1m --db=pglite   one section, one database
//   node dist/bench/run.js --help                  sections and options
//
// Each database gets a fresh in-process API server (as the integration tests start it): PGlite in a
// temp dir, or a new database on a throwaway PostgreSQL server (durability off: fsync,
// synchronous_commit, full_page_writes), with a throwaway redis-server. Everything is stopped and
// removed on the way out, also on Ctrl-C.
//
// To add a section (e.g. worker throughput): write a `Section` in bench/<name>.bench.ts and add it to
// `sections` below. A section gets a running server on one database and records figures.
import { cpus, loadavg } from 'node:os';
import { apiSubmit } from './api-submit.bench';
import { bundleCost } from './bundle.bench';
import { dedicatedCpus } from './dedicated-cpus.bench';
import { diskReset } from './disk-reset.bench';
import { imageStart } from './image-start.bench';
import { qemuPool } from './qemu.bench';
import { imageBuilds } from './images.bench';
import { sandboxSpeed } from './sandbox.bench';
import {
  Cleanup,
  DATABASES,
  DATABASE_LABELS,
  fmtMs,
  fmtValue,
  startTarget,
  table,
  type BenchOptions,
  type DatabaseName,
  type Figure,
  type Section,
} from './bench-kit';
import { status1m } from './status-1m.bench';
import { workerThroughput } from './worker.bench';
import { retention } from './retention.bench';
import { authCost } from './auth.bench';

/** Run in this order; `node dist/bench/run.js [section...]` picks some. */
export const sections: Record<string, Section> = {
  worker: workerThroughput,
  sandbox: sandboxSpeed,
  'api-submit': apiSubmit,
  'status-1m': status1m,
  'disk-reset': diskReset,
  'image-start': imageStart,
  images: imageBuilds,
  'dedicated-cpus': dedicatedCpus,
  retention,
  bundle: bundleCost,
  auth: authCost,
  qemu: qemuPool,
};

const DEFAULTS: BenchOptions = { stored: 1_000_000, chunk: 100_000, requests: 200, runs1k: 5, runs10k: 3, retentionTests: 10_000 };

const OPTIONS: Record<string, { key: keyof BenchOptions; help: string }> = {
  '--stored': { key: 'stored', help: `tests loaded for status-1m (default ${DEFAULTS.stored})` },
  '--chunk': { key: 'chunk', help: `tests per INSERT, and the size of the large plan (default ${DEFAULTS.chunk})` },
  '--requests': { key: 'requests', help: `timed requests per latency figure (default ${DEFAULTS.requests})` },
  '--runs-1k': { key: 'runs1k', help: `submitPlan runs of 1,000 tests (default ${DEFAULTS.runs1k})` },
  '--runs-10k': { key: 'runs10k', help: `submitPlan runs of 10,000 tests (default ${DEFAULTS.runs10k})` },
  '--tests': { key: 'retentionTests', help: `tests of the plan the retention section deletes (default ${DEFAULTS.retentionTests})` },
};

function usage(): string {
  return [
    'usage: node dist/bench/run.js [section...] [--db=pglite,postgresql] [--option=N...]',
    '',
    'sections (default: all, in this order):',
    ...Object.entries(sections).map(([name, s]) => `  ${name.padEnd(14)} ${s.description}`),
    '',
    'options:',
    `  --db=LIST      ${DATABASES.join(',')} (default: both)`,
    ...Object.entries(OPTIONS).map(([flag, o]) => `  ${`${flag}=N`.padEnd(14)} ${o.help}`),
  ].join('\n');
}

function parseArgs(argv: string[]): { names: string[]; databases: DatabaseName[]; options: BenchOptions } | null {
  const names: string[] = [];
  let databases = [...DATABASES];
  const options = { ...DEFAULTS };
  const problems: string[] = [];
  for (const arg of argv) {
    if (arg === '--help' || arg === '-h') return null;
    const m = /^(--[a-z0-9-]+)=(.*)$/.exec(arg);
    if (m && m[1] === '--db') {
      databases = m[2].split(',').filter(Boolean) as DatabaseName[];
      const unknown = databases.filter((d) => !DATABASES.includes(d));
      if (unknown.length || databases.length === 0) problems.push(`--db: ${m[2]} (known: ${DATABASES.join(', ')})`);
    } else if (m && OPTIONS[m[1]]) {
      const n = Number(m[2]);
      if (!Number.isInteger(n) || n < 1) problems.push(`${m[1]}: a positive integer, not ${m[2]}`);
      else options[OPTIONS[m[1]].key] = n;
    } else if (arg.startsWith('-')) problems.push(`unknown option ${arg}`);
    else if (!sections[arg]) problems.push(`unknown section ${arg} (known: ${Object.keys(sections).join(', ')})`);
    else names.push(arg);
  }
  if (problems.length) throw new Error(`${problems.join('\n')}\n\n${usage()}`);
  const chosen = names.length ? Object.keys(sections).filter((s) => names.includes(s)) : Object.keys(sections);
  return { names: chosen, databases, options };
}

const loadAverage = () => loadavg().map((n) => n.toFixed(1)).join(' ');
const loadAtStart = loadAverage();

const log = (msg: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

/** Units where more is better; for every other unit (ms, bytes) less is better. */
const higherIsBetter = (unit: string) => unit.endsWith('/s');

function report(figures: Figure[], failures: string[], databases: DatabaseName[], wallMs: number): string {
  const out: string[] = [];
  out.push(
    table(
      ['database', 'section', 'measure', 'figure', 'detail'],
      figures.map((f) => [DATABASE_LABELS[f.database], f.section, f.measure, fmtValue(f.value, f.unit), f.detail ?? '']),
      [3],
    ),
  );

  if (databases.length === 2) {
    const [a, b] = databases;
    const rows: string[][] = [];
    for (const fa of figures.filter((f) => f.database === a)) {
      const fb = figures.find((f) => f.database === b && f.section === fa.section && f.key === fa.key);
      if (!fb || fb.value === 0 || fa.value === 0) continue;
      const aBetter = higherIsBetter(fa.unit) ? fa.value > fb.value : fa.value < fb.value;
      const ratio = Math.max(fa.value, fb.value) / Math.min(fa.value, fb.value);
      rows.push([fa.section, fa.key, fmtValue(fa.value, fa.unit), fmtValue(fb.value, fb.unit), `${(fa.value / fb.value).toFixed(2)}`, `${DATABASE_LABELS[aBetter ? a : b]} ${ratio.toFixed(1)}x`]);
    }
    if (rows.length) {
      out.push('', `Ratios ${DATABASE_LABELS[a]} / ${DATABASE_LABELS[b]}:`);
      out.push(table(['section', 'figure', a, b, `${a}/${b}`, 'better'], rows, [2, 3, 4]));
    }
  }

  out.push('', 'Summary:');
  for (const db of databases) {
    const get = (key: string) => figures.find((f) => f.database === db && f.key === key);
    const parts: string[] = [];
    for (const n of [1_000, 10_000]) {
      const f = get(`submit-${n}`);
      if (f) parts.push(`submitPlan ${n / 1000}k tests ${fmtMs(f.value)} (${Math.round((n / f.value) * 1000).toLocaleString('en-US')} tests/s)`);
    }
    const load = get('load');
    if (load) parts.push(`${load.measure.replace(/^bulk load of ([\d,]+) tests.*$/, '$1')} tests loaded in ${fmtMs(load.value)}`);
    const status = get('status');
    if (status) parts.push(`systemStatus p50 ${fmtMs(status.value)} (${status.detail?.split(';')[0]})`);
    const plan = get('plan');
    if (plan) parts.push(`plan(id) p50 ${fmtMs(plan.value)}`);
    const ratio = get('ratio');
    const e2e = get('e2e');
    const alone = get('direct');
    const raw = figures.find((f) => f.database === db && f.section === 'worker' && f.key === 'raw');
    if (ratio && e2e) {
      parts.push(
        `worker end to end ${e2e.value.toFixed(1)} tests/s, ${ratio.value.toFixed(2)}x the driver alone` +
          (alone && raw ? ` (${alone.value.toFixed(1)} tests/s, ${(alone.value / raw.value).toFixed(2)}x raw bwrap ${raw.value.toFixed(1)} runs/s)` : ''),
      );
    }
    const sRaw = figures.find((f) => f.database === db && f.section === 'sandbox' && f.key === 'raw');
    const sDriver = figures.find((f) => f.database === db && f.section === 'sandbox' && f.key === 'driver');
    if (sRaw && sDriver) parts.push(`sandbox (in turns): driver alone ${sDriver.value.toFixed(1)} tests/s = ${(sDriver.value / sRaw.value).toFixed(2)}x raw ${sRaw.value.toFixed(1)} runs/s`);
    const bundle = get('bundle-per-test');
    const plainCopy = get('bundle-plain-copy');
    if (bundle && plainCopy) parts.push(`a 10 MB, 1,000-file bundle costs a test ${fmtMs(bundle.value)} (a plain copy ${fmtMs(plainCopy.value)})`);
    const boot = get('qemu-boot');
    const start = get('qemu-start');
    const vmReset = get('qemu-reset');
    const qt = get('qemu-trivial');
    const ct = get('container-trivial');
    if (boot && start && vmReset && qt && ct) {
      const spare = get('qemu-reset-spare');
      const fresh = get('qemu-reset-fresh');
      const resets = [spare && `reset (spare swapped in) ${fmtMs(spare.value)}`, `warm reset ${fmtMs(vmReset.value)}`, fresh && `reset without a spare ${fmtMs(fresh.value)}`].filter(Boolean).join(', ');
      parts.push(`QEMU: cold boot ${fmtMs(boot.value)}, warm start ${fmtMs(start.value)}, ${resets}, a trivial test ${fmtMs(qt.value)} (container ${fmtMs(ct.value)})`);
    }
    const resetBig = get('reset-big');
    const resetSmall = get('reset-small');
    if (resetBig && resetSmall) parts.push(`reset after 1 GB + 100,000 files ${fmtMs(resetBig.value)}, after a small test ${fmtMs(resetSmall.value)}`);
    const builds = [['build-base', 'base'], ['build-derived', 'derived'], ['build-oci', 'OCI import']].flatMap(([k, label]) => {
      const f = get(k);
      return f ? [`${label} ${fmtMs(f.value)}`] : [];
    });
    if (builds.length) parts.push(`image builds: ${builds.join(', ')}`);
    const toRunning = get('to-running');
    if (toRunning) parts.push(`submit→RUNNING p50 ${fmtMs(toRunning.value)} (${toRunning.detail})`);
    const failed = failures.filter((f) => f.startsWith(`${db}:`));
    if (failed.length) parts.push(`FAILED: ${failed.map((f) => f.slice(db.length + 1).trim()).join('; ')}`);
    out.push(`  ${DATABASE_LABELS[db]}: ${parts.join('; ') || 'nothing measured'}`);
  }
  out.push(
    '',
    `machine: ${cpus().length} CPUs, node ${process.version}; load average at start ${loadAtStart}, at end ${loadAverage()} ` +
      '(other work on the machine skews the figures); bench wall time ' +
      fmtMs(wallMs),
  );
  return out.join('\n');
}

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    return 2;
  }
  if (!parsed) {
    process.stdout.write(`${usage()}\n`);
    return 0;
  }
  const { names, databases, options } = parsed;
  const started = Date.now();
  const cleanup = new Cleanup();
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) process.exit(130); // a second signal: leave at once (the helpers' reapers stop the servers)
    interrupted = true;
    log(`${signal}: stopping everything started`);
    void cleanup.runAll().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const figures: Figure[] = [];
  const failures: string[] = [];
  try {
    for (const database of databases) {
      log(`${DATABASE_LABELS[database]}: starting an API server`);
      let target;
      try {
        target = await startTarget(database, cleanup);
      } catch (e) {
        failures.push(`${database}: start: ${(e as Error).message}`);
        log(`${database}: could not start: ${(e as Error).stack}`);
        continue;
      }
      const shared = new Map<string, unknown>();
      for (const name of names) {
        log(`${DATABASE_LABELS[database]}: ${name}`);
        try {
          await sections[name].run({
            database,
            server: target.server,
            options,
            shared,
            log: (msg) => log(`${database} ${name}: ${msg}`),
            record: (f) => figures.push({ ...f, database, section: name }),
          });
        } catch (e) {
          const cause = (e as Error).cause as Error | undefined;
          failures.push(`${database}: ${name}: ${(e as Error).message}${cause ? ` (${cause.message})` : ''}`);
          log(`${database} ${name} failed: ${(e as Error).stack}`);
        }
      }
      await target.stop(); // before the next database: PGlite's memory is this process's
    }
  } finally {
    await cleanup.runAll();
  }
  process.stdout.write(`\n${report(figures, failures, databases, Date.now() - started)}\n`);
  return failures.length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`${(e as Error).stack}\n`);
    process.exit(1);
  },
);
