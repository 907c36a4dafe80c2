// Shared pieces of the benchmarks: the targets (one real API server per database), timing statistics,
// and the figures table. Benchmarks print figures and ratios; they never assert timings.
import { performance } from 'node:perf_hooks';
import { startTestPostgres, type TestPostgres } from '../test/helpers/postgres';
import { startTestRedis, type TestRedis } from '../test/helpers/redis';
import { startTestServer, type TestServer } from '../test/helpers/server';

export type DatabaseName = 'pglite' | 'postgresql';
export const DATABASES: readonly DatabaseName[] = ['pglite', 'postgresql'];

export const DATABASE_LABELS: Record<DatabaseName, string> = {
  pglite: 'PGlite (embedded)',
  postgresql: 'PostgreSQL server',
};

export interface BenchOptions {
  /** Tests stored before the read benchmarks (default 1,000,000). */
  stored: number;
  /** Tests per bulk INSERT statement while loading (default 100,000). */
  chunk: number;
  /** Timed HTTP requests per read benchmark (default 200). */
  requests: number;
  /** submitPlan runs of 1,000 tests (median reported; default 5) and of 10,000 tests (default 3). */
  runs1k: number;
  runs10k: number;
  /** Tests of the finished plan the retention section streams as a tar and deletes (default 10,000). */
  retentionTests: number;
}

/** One measured figure: a line of the table. */
export interface Figure {
  database: DatabaseName;
  section: string;
  /** Short stable name within the section (e.g. "submit-1000"), for summaries and ratios. */
  key: string;
  measure: string;
  /** The main figure, in `unit`; compared across databases. */
  value: number;
  unit: string;
  /** Secondary figures, already formatted (e.g. "p95 3.1 ms, p99 4.0 ms"). */
  detail?: string;
}

/** What a section gets: a running API server on one database, and where to put its figures. */
export interface SectionContext {
  database: DatabaseName;
  server: TestServer;
  options: BenchOptions;
  record(f: Omit<Figure, 'database' | 'section'>): void;
  /** Progress to stderr (the figures go to stdout). */
  log(msg: string): void;
  /** Shared between the sections of one database, in run order (e.g. the id of a large plan). */
  shared: Map<string, unknown>;
}

export interface Section {
  description: string;
  run(ctx: SectionContext): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Targets

/** Things to stop on the way out, last started first; also run on SIGINT/SIGTERM. */
export class Cleanup {
  private readonly steps: { name: string; fn: () => Promise<void> }[] = [];

  add(name: string, fn: () => Promise<void>): () => Promise<void> {
    const step = { name, fn };
    this.steps.push(step);
    // the returned function runs this step now (and only once)
    return async () => {
      const i = this.steps.indexOf(step);
      if (i >= 0) {
        this.steps.splice(i, 1);
        await fn();
      }
    };
  }

  async runAll(): Promise<void> {
    while (this.steps.length) {
      const step = this.steps.pop()!;
      try {
        await step.fn();
      } catch (e) {
        process.stderr.write(`cleanup: ${step.name} failed: ${(e as Error).message}\n`);
      }
    }
  }
}

let sharedRedis: Promise<TestRedis> | undefined;
let sharedPostgres: Promise<TestPostgres> | undefined;

/** One Redis for the whole run: each server has its own key prefix. */
function redis(cleanup: Cleanup): Promise<TestRedis> {
  if (!sharedRedis) {
    sharedRedis = startTestRedis();
    cleanup.add('redis-server', async () => (await sharedRedis!).stop());
  }
  return sharedRedis;
}

/** Starts a fresh API server on the database; the returned stop() also removes its data. */
export async function startTarget(
  database: DatabaseName,
  cleanup: Cleanup,
  opts: { worker?: boolean; env?: Record<string, string> } = {},
): Promise<{ server: TestServer; stop(): Promise<void> }> {
  const { url: redisUrl } = await redis(cleanup);
  let databaseUrl: string | undefined;
  if (database === 'postgresql') {
    if (!sharedPostgres) {
      sharedPostgres = startTestPostgres();
      cleanup.add('postgresql server', async () => (await sharedPostgres!).stop());
    }
    databaseUrl = await (await sharedPostgres).createDatabase();
  }
  const server = await startTestServer({ redisUrl, databaseUrl, worker: opts.worker, env: { LOG_LEVEL: 'silent', ...opts.env } });
  const stop = cleanup.add(`API server on ${database}`, () => server.stop());
  return { server, stop };
}

// ---------------------------------------------------------------------------------------------
// Measuring

export const now = (): number => performance.now();
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; result: T }> {
  const start = now();
  const result = await fn();
  return { ms: now() - start, result };
}

/**
 * The longest time the event loop did not run a timer, from now until stop(). The API server runs in
 * this process, so a stall is the server answering nobody (PGlite executes each statement on this
 * thread). A plain interval: perf_hooks.monitorEventLoopDelay missed multi-second stalls here.
 */
export function stallMonitor(): { stop(): Promise<number> } {
  const every = 5;
  let last = now();
  let longest = 0;
  const tick = () => {
    const t = now();
    longest = Math.max(longest, t - last - every);
    last = t;
  };
  const timer = setInterval(tick, every);
  return {
    async stop() {
      await sleep(every * 4); // let the timer see the end of a stall still under way
      clearInterval(timer);
      return Math.max(0, longest);
    },
  };
}

export interface Stats {
  n: number;
  min: number;
  mean: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentiles. */
export function stats(samples: readonly number[]): Stats {
  if (samples.length === 0) throw new Error('no samples');
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
  return { n: s.length, min: s[0], mean: s.reduce((a, b) => a + b, 0) / s.length, p50: at(0.5), p95: at(0.95), p99: at(0.99), max: s[s.length - 1] };
}

export const median = (samples: readonly number[]): number => stats(samples).p50;

/**
 * Latency of one request, sequentially `count` times after `warmup` untimed ones; then the rate with
 * `concurrency` requests in flight.
 */
export async function latency(
  request: () => Promise<void>,
  opts: { count: number; warmup?: number; concurrency?: number },
): Promise<{ stats: Stats; perSecond: number }> {
  for (let i = 0; i < (opts.warmup ?? 20); i++) await request();
  const samples: number[] = [];
  for (let i = 0; i < opts.count; i++) samples.push((await timed(request)).ms);
  const concurrency = opts.concurrency ?? 8;
  let left = opts.count;
  const start = now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (left-- > 0) await request();
    }),
  );
  return { stats: stats(samples), perSecond: (opts.count / (now() - start)) * 1000 };
}

// ---------------------------------------------------------------------------------------------
// Formatting

export function fmtMs(ms: number): string {
  if (ms >= 10_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 100) return `${ms.toFixed(0)} ms`;
  if (ms >= 10) return `${ms.toFixed(1)} ms`;
  return `${ms.toFixed(2)} ms`;
}

export function fmtNum(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

export function fmtBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function fmtValue(value: number, unit: string): string {
  if (unit === 'ms') return fmtMs(value);
  if (unit === 'bytes') return fmtBytes(value);
  if (unit === 'x') return `${value.toFixed(2)}x`;
  if (unit.endsWith('/s') && value < 100) return `${value.toFixed(1)} ${unit}`;
  return `${fmtNum(value)} ${unit}`;
}

export function table(header: string[], rows: string[][], rightAligned: number[] = []): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (rightAligned.includes(i) ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}
