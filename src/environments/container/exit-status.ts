// What a run's end means: the runner's status file and bwrap's own exit decoded into the exit code
// or signal a test reports.

import os from 'node:os';
import type { RunOutcome } from '../driver';
import type { RunnerStatus } from './runner-script';

const SIGNAL_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(os.constants.signals).map(([name, num]) => [num, name]),
);

export function signalName(n: number): string {
  return SIGNAL_NAMES[n] ?? `SIG${n}`;
}

export interface SandboxExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  error?: Error;
}

/**
 * The exit code or signal of a run. The runner's status (what the script itself ended with) wins;
 * a run killed at its timeout or aborted ended by SIGKILL; without a status (the runner itself was
 * killed, e.g. by the OOM killer) bwrap's exit says it, 128+N being signal N.
 */
export function decodeExit(
  status: RunnerStatus | null,
  exit: SandboxExit,
  killed: { timedOut: boolean; aborted: boolean },
): { exitCode: number | null; signal: string | null } {
  const byKill = killed.timedOut || killed.aborted;
  if (status && !byKill) {
    if (status.kind === 'exit') return { exitCode: status.code, signal: null };
    if (status.kind === 'signal') return { exitCode: null, signal: signalName(status.signal) };
    if (status.code > 128 && SIGNAL_NAMES[status.code - 128]) return { exitCode: null, signal: signalName(status.code - 128) };
    return { exitCode: status.code, signal: null };
  }
  if (byKill) return { exitCode: null, signal: 'SIGKILL' };
  if (exit.signal) return { exitCode: null, signal: exit.signal };
  if (exit.code !== null && exit.code > 128 && SIGNAL_NAMES[exit.code - 128]) return { exitCode: null, signal: signalName(exit.code - 128) };
  return { exitCode: exit.code, signal: null };
}

/** The outcome of a run that never started (aborted before it began). */
export function emptyOutcome(over: Partial<RunOutcome>): RunOutcome {
  return {
    exitCode: null,
    signal: null,
    timedOut: false,
    aborted: false,
    oomKilled: false,
    stdout: '',
    stderr: '',
    stdoutBytes: Buffer.alloc(0),
    stderrBytes: Buffer.alloc(0),
    outputTruncated: false,
    durationMs: 0,
    cpuTimeMs: null,
    peakMemoryBytes: null,
    files: [],
    ...over,
  };
}
