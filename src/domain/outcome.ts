// What a finished run means for its test, and what an infrastructure fault means. Pure.

import type { TestStatus } from './status';

export interface RunFacts {
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  oomKilled: boolean;
  stderr: string;
  timeoutSeconds: number;
  memoryMb: number;
  /** The working directory's disk was full at the end (writes failed with ENOSPC). */
  diskFull?: boolean;
  diskMb?: number;
  /** Forks were refused at the process limit of `pidsLimit` processes. */
  pidsLimitHit?: boolean;
  pidsLimit?: number;
}

/** The terminal status of a run the script finished (or was killed in), and its one-line reason. */
export function classifyRun(r: RunFacts): { status: Extract<TestStatus, 'PASSED' | 'FAILED' | 'TIMED_OUT'>; errorMessage: string | null } {
  // Refused forks leave a script that did not run as written (a fork bomb often hangs in fork retries
  // until the deadline): the limit is the reason to report, whatever the exit code or the timeout.
  if (r.pidsLimitHit) {
    const after = r.timedOut ? ` (then timed out after ${r.timeoutSeconds} s)` : '';
    return { status: 'FAILED', errorMessage: `reached its process limit of ${r.pidsLimit ?? '?'} processes (pids): a fork was refused${after}` };
  }
  if (r.timedOut) return { status: 'TIMED_OUT', errorMessage: `timed out after ${r.timeoutSeconds} s: every process of the test was killed` };
  if (r.exitCode === 0 && !r.signal) return { status: 'PASSED', errorMessage: null };
  if (r.oomKilled) return { status: 'FAILED', errorMessage: `exceeded its memory limit of ${r.memoryMb} MB and was killed` };
  const last = lastLine(r.stderr);
  if (r.diskFull) {
    const limit = r.diskMb ? `its disk limit of ${r.diskMb} MB` : 'its disk limit';
    return { status: 'FAILED', errorMessage: `hit ${limit} (No space left on device)${last ? `: ${last}` : ''}` };
  }
  if (r.signal) return { status: 'FAILED', errorMessage: `killed by ${r.signal}${last ? `: ${last}` : ''}` };
  // a declared service that failed or never got ready: the runner says which, and ran no script
  const service = last?.match(/^\[orchestrator\] (service .*)$/);
  if (service) return { status: 'FAILED', errorMessage: `${service[1]}: the script was not run` };
  return { status: 'FAILED', errorMessage: last ? `exit code ${r.exitCode}: ${last}` : `exit code ${r.exitCode}` };
}

/** The last non-empty line of a text, trimmed to one readable line. */
export function lastLine(text: string, max = 300): string | null {
  const lines = text.split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    const l = lines[i].trim();
    if (l) return l.length > max ? `${l.slice(0, max)}…` : l;
  }
  return null;
}

/** The error message with what artifact collection left out, said after it (or alone). */
export function withArtifactNotes(errorMessage: string | null, notes: readonly string[] | undefined): string | null {
  if (!notes?.length) return errorMessage;
  const said = `artifacts: ${notes.join('; ')}`;
  return errorMessage ? `${errorMessage} — ${said}` : said;
}

/**
 * After an infrastructure fault on attempt `attempts` (1-based): another attempt while the retry budget
 * lasts, else ERROR. A test's own failure never comes here.
 */
export function afterInfrastructureFault(attempts: number, maxRetries: number): 'RETRY' | 'ERROR' {
  return attempts <= maxRetries ? 'RETRY' : 'ERROR';
}
