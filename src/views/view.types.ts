// What the API returns and events carry: plain JSON-safe objects (dates as ISO strings), because they
// cross Redis. Made from database rows by view.mappers.ts, beside this file.

import type { ArtifactKind, EnvironmentKind, EnvironmentStatus, PlanStatus, TestStatus, TestType } from '../domain/enums';
import type { StatusCounts } from '../domain/status';

export interface ArtifactView {
  id: string;
  name: string;
  kind: ArtifactKind;
  sizeBytes: number;
  sha256: string;
  url: string;
}

export interface ResultView {
  /** The run (attempt) this is the result of: where further pages of artifacts are read. */
  runId: string;
  /** All artifacts of the run; `artifacts` holds at most the first ARTIFACTS_IN_VIEW (view.mappers.ts). */
  artifactCount: number;
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  outputTruncated: boolean;
  durationMs: number;
  timedOut: boolean;
  errorMessage: string | null;
  metrics: UsageView | null;
  /** What the test reported itself (`##metric` lines, $METRICS_FILE), in the order reported. */
  reportedMetrics: ReportedMetric[];
  artifacts: ArtifactView[];
}

/** One figure a test reported itself. */
export interface ReportedMetric {
  name: string;
  value: number;
  unit: string | null;
}

export interface TestView {
  id: string;
  planId: string;
  name: string;
  type: TestType;
  status: TestStatus;
  attempts: number;
  pool: string;
  priority: number;
  queuedAt: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  environmentId: string | null;
  requirements: unknown;
  /** undefined: not loaded (resolved on demand); null: no result yet. */
  result?: ResultView | null;
}

export interface PlanView {
  id: string;
  name: string;
  priority: number;
  status: PlanStatus;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  /** Id of the bundle it was submitted with ("sha256:…"), or null. */
  bundle: string | null;
  /** Name of the token that submitted it; null when authentication was off. */
  submittedBy: string | null;
  counts: StatusCounts;
}

export interface EnvironmentView {
  id: string;
  pool: string;
  kind: EnvironmentKind;
  status: EnvironmentStatus;
  host: string;
  arch: string;
  cpus: number;
  memoryMb: number;
  image: string | null;
  tags: string[];
  currentTestId: string | null;
  testsRun: number;
  failures: number;
}

export interface OutputChunkView {
  testId: string;
  stream: 'stdout' | 'stderr';
  data: string;
  /** Byte offset of `data` in its stream, so a client that reconnects can resume. */
  offset: number;
}

/**
 * Live use of an environment while it runs a test, as its worker last reported it; or what a finished
 * run used (then also the detailed figures, absent from live use).
 */
export interface UsageView {
  cpuTimeMs: number | null;
  cpuPercent: number | null;
  memoryBytes: number | null;
  peakMemoryBytes: number | null;
  userCpuMs?: number | null;
  systemCpuMs?: number | null;
  voluntaryContextSwitches?: number | null;
  involuntaryContextSwitches?: number | null;
  readBytes?: number | null;
  writeBytes?: number | null;
}
