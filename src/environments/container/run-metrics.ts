// The figures of one container run beside its exit: what the kernel counted (the run's cgroup: CPU
// split into user and system; the runner's getrusage of the script: context switches, storage bytes)
// and what the test reported itself (`##metric` lines scanned from the whole of stdout, and the file at
// $METRICS_FILE in the control dir). Where each figure comes from, and why, is in the README
// ("Performance tests").

import path from 'node:path';
import type { WarnLogger } from '../../infra/best-effort';
import type { CgroupStats } from '../cgroups/run-cgroup';
import type { RunOutcome } from '../driver';
import { MAX_METRICS_FILE_BYTES, MAX_REPORTED_METRICS, parseMetricsFile, type MetricLineScanner } from '../reported-metrics';
import { SANDBOX_CTL_DIR } from './bwrap-args';
import { readCappedRegularFileSync } from './host-files';
import { parseRunnerUsage } from './runner-script';

/** The metrics file's name in the control dir; $METRICS_FILE is its path inside the sandbox. */
export const METRICS_FILE_NAME = 'metrics.json';
export const SANDBOX_METRICS_FILE = `${SANDBOX_CTL_DIR}/${METRICS_FILE_NAME}`;

/** 512-byte blocks of getrusage's inblock/oublock. */
const BLOCK = 512;

export type RunMetrics = Pick<
  RunOutcome,
  'userCpuMs' | 'systemCpuMs' | 'voluntaryContextSwitches' | 'involuntaryContextSwitches' | 'readBytes' | 'writeBytes' | 'reportedMetrics'
>;

export async function collectRunMetrics(input: {
  stats: CgroupStats | null;
  /** The runner's status file (its `usage` line), null when there was none. */
  statusText: string | null;
  stdoutMetrics: MetricLineScanner;
  ctlDir: string;
  log: WarnLogger;
  testId: string;
}): Promise<RunMetrics> {
  const usage = input.statusText === null ? null : parseRunnerUsage(input.statusText);
  const fromStdout = input.stdoutMetrics.end();
  let ignored = input.stdoutMetrics.ignored;
  const reported = [...fromStdout];
  const file = readCappedRegularFileSync(path.join(input.ctlDir, METRICS_FILE_NAME), input.log, MAX_METRICS_FILE_BYTES);
  if (file?.tooBig) {
    input.log.warn({ testId: input.testId, maxBytes: MAX_METRICS_FILE_BYTES }, 'the METRICS_FILE of a test is larger than allowed: ignored');
  } else if (file) {
    const parsed = parseMetricsFile(file.text, MAX_REPORTED_METRICS - reported.length);
    reported.push(...parsed.metrics);
    ignored += parsed.ignored;
  }
  if (ignored > 0) input.log.warn({ testId: input.testId, ignored }, 'reported metrics ignored (not well formed, or beyond the cap)');
  return {
    userCpuMs: input.stats?.userCpuMs ?? null,
    systemCpuMs: input.stats?.systemCpuMs ?? null,
    voluntaryContextSwitches: usage?.voluntarySwitches ?? null,
    involuntaryContextSwitches: usage?.involuntarySwitches ?? null,
    readBytes: usage ? usage.inBlocks * BLOCK : null,
    writeBytes: usage ? usage.outBlocks * BLOCK : null,
    reportedMetrics: reported,
  };
}
