// Events cross Redis as JSON: every payload is a plain object, dates as ISO strings.

import type { PlanStatus, StatusCounts, TestStatus } from '../domain/status';

export interface ArtifactView {
  id: string;
  name: string;
  kind: 'LOG' | 'CORE_DUMP' | 'FILE';
  sizeBytes: number;
  sha256: string;
  url: string;
}

export interface ResultView {
  /** The run (attempt) this is the result of: where further pages of artifacts are read. */
  runId: string;
  /** All artifacts of the run; `artifacts` holds at most the first ARTIFACTS_IN_VIEW (db/views.ts). */
  artifactCount: number;
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  outputTruncated: boolean;
  durationMs: number;
  timedOut: boolean;
  errorMessage: string | null;
  metrics: { cpuTimeMs: number | null; cpuPercent: number | null; memoryBytes: number | null; peakMemoryBytes: number | null } | null;
  artifacts: ArtifactView[];
}

export interface TestView {
  id: string;
  planId: string;
  name: string;
  type: 'UNIT' | 'INTEGRATION' | 'PERFORMANCE' | 'SECURITY';
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
  counts: StatusCounts;
}

export interface EnvironmentView {
  id: string;
  pool: string;
  kind: 'CONTAINER' | 'QEMU';
  status: 'PROVISIONING' | 'READY' | 'BUSY' | 'RESETTING' | 'UNHEALTHY' | 'RETIRED';
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

export interface EventMap {
  test: TestView;
  plan: PlanView;
  environment: EnvironmentView;
  /** Something changed that systemStatus shows but no other event carries (a worker came or went). */
  system: { reason: string };
  /** A request to abort a running test, heard by every worker. */
  cancel: { testId: string };
  output: OutputChunkView;
}

export type Topic = keyof EventMap;
