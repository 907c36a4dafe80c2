// What `submit --wait` prints while it follows a plan. On a terminal: one progress line rewritten in
// place (counts by status, elapsed time), with a permanent line for each test that did not pass. Not on a
// terminal (a CI log): plain lines, one per status change of a test and of the plan, nothing rewritten.
// At the end: each failed, timed-out or errored test's message and the tail of its stderr.
//
// Every name, message and output line comes from outside: each is printed through oneLine (control
// characters and bidirectional overrides made visible), so a test cannot move the cursor or fake a line.

import { oneLine } from './one-line';

export interface Counts {
  queued?: number;
  running?: number;
  passed?: number;
  failed?: number;
  timedOut?: number;
  error?: number;
  cancelled?: number;
  total?: number;
}

export interface TestUpdate {
  id?: string;
  name: string;
  status: string;
  attempts?: number;
  result?: { durationMs?: number | null; errorMessage?: string | null } | null;
}

export interface Terminal {
  write(text: string): void;
  /** a terminal: the progress line is rewritten in place */
  isTTY: boolean;
  columns?: number;
}

const ORDER: [keyof Counts, string][] = [
  ['queued', 'queued'],
  ['running', 'running'],
  ['passed', 'passed'],
  ['failed', 'failed'],
  ['timedOut', 'timed out'],
  ['error', 'errors'],
  ['cancelled', 'cancelled'],
];

export function elapsed(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`;
}

/** "3 queued, 1 running, 5 passed, 1 failed of 10 · 1m05s": the counts that are not zero. */
export function countsLine(c: Counts, elapsedMs: number): string {
  const parts = ORDER.filter(([k]) => (c[k] ?? 0) > 0).map(([k, label]) => `${c[k]} ${label}`);
  return `${parts.length ? parts.join(', ') : 'nothing yet'} of ${c.total ?? '?'} · ${elapsed(elapsedMs)}`;
}

/** The permanent line of a test's status change: "  FAILED    name (12 ms): exit code 1". */
export function testLine(t: TestUpdate): string {
  const ms = t.result?.durationMs;
  const finished = t.status !== 'RUNNING' && t.status !== 'QUEUED';
  const duration = finished && typeof ms === 'number' ? ` (${Math.round(ms)} ms)` : '';
  const retry = t.status === 'QUEUED' && (t.attempts ?? 0) > 0 ? ` (again, after attempt ${t.attempts})` : '';
  const error = finished && typeof t.result?.errorMessage === 'string' && t.result.errorMessage ? `: ${oneLine(t.result.errorMessage, 300)}` : '';
  return `  ${oneLine(t.status, 20).padEnd(9)} ${oneLine(String(t.name), 200)}${duration}${retry}${error}`;
}

const CLEAR = '\r\u001b[K';

export class Progress {
  private counts: Counts = {};
  private readonly seen = new Map<string, string>();
  private shown = false;
  private ticker: NodeJS.Timeout | undefined;
  private ended = false;

  constructor(
    private readonly term: Terminal,
    private readonly startedAt: number,
    private readonly now: () => number = Date.now,
  ) {
    if (term.isTTY) {
      this.ticker = setInterval(() => this.draw(), 1000);
      this.ticker.unref();
    }
  }

  /** A line that stays (plan accepted, a test that failed), above the progress line on a terminal. */
  line(text: string): void {
    if (this.ended) return;
    if (this.term.isTTY && this.shown) this.term.write(CLEAR);
    this.term.write(`${text}\n`);
    this.shown = false;
    this.draw();
  }

  /** The plan's counts, from planUpdated or a poll. */
  update(c: Counts): void {
    this.counts = { ...c };
    this.draw();
  }

  /** A test's status change, from testUpdated; the same status twice prints once. */
  test(t: TestUpdate): void {
    if (!t || typeof t.status !== 'string') return;
    const key = t.id ?? t.name;
    const seenKey = `${t.status}/${t.attempts ?? 0}`;
    if (this.seen.get(key) === seenKey) return;
    const first = !this.seen.has(key);
    this.seen.set(key, seenKey);
    if (this.term.isTTY) {
      // a terminal keeps only what needs reading: the tests that did not pass
      if (t.status !== 'PASSED' && t.status !== 'RUNNING' && t.status !== 'QUEUED') this.line(testLine(t));
      return;
    }
    if (t.status === 'QUEUED' && first && !(t.attempts ?? 0)) return; // where every test starts
    this.line(testLine(t));
  }

  /** The plan's status changed (plain lines only: a terminal shows it in the progress line). */
  plan(status: string): void {
    if (!this.term.isTTY) this.line(`plan now ${oneLine(status, 20)}: ${countsLine(this.counts, this.now() - this.startedAt)}`);
  }

  /** Removes the progress line and stops redrawing it; what follows is printed as plain lines. */
  end(): void {
    if (this.ended) return;
    clearInterval(this.ticker);
    if (this.term.isTTY && this.shown) this.term.write(CLEAR);
    this.ended = true;
  }

  private draw(): void {
    if (!this.term.isTTY || this.ended) return;
    const width = Math.max(20, (this.term.columns ?? 80) - 1);
    const text = oneLine(countsLine(this.counts, this.now() - this.startedAt), width);
    this.term.write(`${CLEAR}${text.length > width ? `${text.slice(0, width - 1)}…` : text}`);
    this.shown = true;
  }
}

export interface FinishedTest {
  name: string;
  status: string;
  result?: { durationMs?: number | null; errorMessage?: string | null; stderr?: string | null; exitCode?: number | null } | null;
}

export const STDERR_TAIL_LINES = 20;
/** Details for at most this many tests; the rest are counted (the JUnit report has them all). */
export const MAX_DETAILED = 50;
const NOT_PASSED = new Set(['FAILED', 'TIMED_OUT', 'ERROR']);

/** The lines printed at the end for each FAILED, TIMED_OUT and ERROR test: its message and its stderr's last lines. */
export function failureDetails(tests: readonly FinishedTest[]): string[] {
  const bad = tests.filter((t) => NOT_PASSED.has(t.status));
  if (!bad.length) return [];
  const out: string[] = [''];
  for (const t of bad.slice(0, MAX_DETAILED)) {
    const message = t.result?.errorMessage ? `: ${oneLine(t.result.errorMessage, 500)}` : '';
    out.push(`${oneLine(t.status, 20)} ${oneLine(t.name, 200)}${message}`);
    const stderr = (t.result?.stderr ?? '').replace(/\n$/, '');
    if (!stderr) {
      out.push('  (nothing on stderr)');
      continue;
    }
    const lines = stderr.split('\n');
    const tail = lines.slice(-STDERR_TAIL_LINES);
    out.push(lines.length > tail.length ? `  stderr, last ${tail.length} of ${lines.length} lines:` : '  stderr:');
    for (const l of tail) out.push(`  | ${oneLine(l.replace(/\r$/, ''), 500)}`);
  }
  if (bad.length > MAX_DETAILED) out.push(`... and ${bad.length - MAX_DETAILED} more tests that did not pass (--junit FILE has them all)`);
  return out;
}
