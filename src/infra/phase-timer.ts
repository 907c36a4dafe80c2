// Where the time of one operation goes: laps of a stopwatch, each added to a named phase. A disabled
// timer (NO_PHASES) records nothing and costs a call; the container driver's `phaseTimings` option turns
// it on (benchmarks, debugging: the phases go in its log lines).

import { performance } from 'node:perf_hooks';

export interface PhaseTimer {
  /** Adds the time since the last lap (or the start) to `phase`. */
  lap(phase: string): void;
  /** Adds the time from the last lap to `at` (a performance.now() taken earlier) to `phase`; the next lap starts at `at`. */
  lapAt(phase: string, at: number): void;
  /** The phases so far (ms, rounded to µs), and the time since the start as the timer's total; null when disabled. */
  done(): Record<string, number> | null;
}

class Stopwatch implements PhaseTimer {
  constructor(private readonly totalName: string) {}
  private readonly start = performance.now();
  private last = this.start;
  private readonly phases: Record<string, number> = {};

  lap(phase: string): void {
    this.lapAt(phase, performance.now());
  }

  lapAt(phase: string, at: number): void {
    this.phases[phase] = (this.phases[phase] ?? 0) + (at - this.last);
    this.last = at;
  }

  done(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(this.phases)) out[k] = Math.round(v * 1000) / 1000;
    out[this.totalName] = Math.round((performance.now() - this.start) * 1000) / 1000;
    return out;
  }
}

export const NO_PHASES: PhaseTimer = { lap() {}, lapAt() {}, done: () => null };

/** `totalName`: the phase holding the time from the timer's start to done(). */
export function phaseTimer(enabled: boolean, totalName: string): PhaseTimer {
  return enabled ? new Stopwatch(totalName) : NO_PHASES;
}
