// Row → view mapping: the plain JSON-safe objects the API returns and events carry.
import type { EnvironmentView, PlanView, ReportedMetric, ResultView, TestView, UsageView } from './view.types';
import { emptyCounts, type StatusCounts, type TestStatus } from '../domain/status';
import type { EnvironmentModel } from '../generated/prisma/models/Environment';
import type { ExecutionPlanModel } from '../generated/prisma/models/ExecutionPlan';
import type { TestCaseModel } from '../generated/prisma/models/TestCase';
import type { TestRunModel } from '../generated/prisma/models/TestRun';
import type { ArtifactModel } from '../generated/prisma/models/Artifact';

export const iso = (d: Date | string | null | undefined): string | null =>
  d === null || d === undefined ? null : typeof d === 'string' ? new Date(d).toISOString() : d.toISOString();

export function countsFrom(rows: Iterable<{ status: string; n: number | bigint }>): StatusCounts {
  const counts = emptyCounts();
  for (const r of rows) counts[r.status as TestStatus] += Number(r.n);
  return counts;
}

export function planView(p: Pick<ExecutionPlanModel, 'id' | 'name' | 'priority' | 'status' | 'createdAt' | 'startedAt' | 'finishedAt' | 'bundleId' | 'submittedBy'>, counts: StatusCounts): PlanView {
  return {
    id: p.id,
    name: p.name,
    priority: p.priority,
    status: p.status,
    createdAt: iso(p.createdAt) as string,
    startedAt: iso(p.startedAt),
    finishedAt: iso(p.finishedAt),
    bundle: p.bundleId,
    submittedBy: p.submittedBy,
    counts,
  };
}

/** A plan row as to_jsonb() renders it (snake_case keys). */
export function planViewFromJson(row: Record<string, unknown>, counts: StatusCounts): PlanView {
  return {
    id: String(row.id),
    name: String(row.name),
    priority: Number(row.priority),
    status: row.status as PlanView['status'],
    createdAt: iso(row.created_at as string) as string,
    startedAt: iso(row.started_at as string | null),
    finishedAt: iso(row.finished_at as string | null),
    bundle: typeof row.bundle_id === 'string' ? row.bundle_id : null,
    submittedBy: typeof row.submitted_by === 'string' ? row.submitted_by : null,
    counts,
  };
}

export type TestRow = Pick<
  TestCaseModel,
  'id' | 'planId' | 'name' | 'type' | 'status' | 'attempts' | 'pool' | 'priority' | 'queuedAt' | 'startedAt' | 'finishedAt' | 'environmentId' | 'requirements'
>;

export const TEST_VIEW_SELECT = {
  id: true,
  planId: true,
  name: true,
  type: true,
  status: true,
  attempts: true,
  pool: true,
  priority: true,
  queuedAt: true,
  startedAt: true,
  finishedAt: true,
  environmentId: true,
  requirements: true,
} as const;

export function testView(t: TestRow, result?: ResultView | null): TestView {
  return {
    id: t.id,
    planId: t.planId,
    name: t.name,
    type: t.type,
    status: t.status,
    attempts: t.attempts,
    pool: t.pool,
    priority: t.priority,
    queuedAt: iso(t.queuedAt),
    startedAt: iso(t.startedAt),
    finishedAt: iso(t.finishedAt),
    environmentId: t.environmentId,
    requirements: t.requirements,
    ...(result === undefined ? {} : { result }),
  };
}

type RunFields = Pick<
  TestRunModel,
  'exitCode' | 'signal' | 'stdout' | 'stderr' | 'outputTruncated' | 'durationMs' | 'timedOut' | 'errorMessage' | 'cpuTimeMs' | 'peakMemoryBytes'
  | 'userCpuMs' | 'systemCpuMs' | 'voluntaryContextSwitches' | 'involuntaryContextSwitches' | 'readBytes' | 'writeBytes'
> & { reportedMetrics: unknown };

const DETAILED_USAGE = ['userCpuMs', 'systemCpuMs', 'voluntaryContextSwitches', 'involuntaryContextSwitches', 'readBytes', 'writeBytes'] as const;

/** What a run used; null when nothing was measured. */
function runUsage(run: RunFields): UsageView | null {
  const usage: UsageView = { cpuTimeMs: run.cpuTimeMs, cpuPercent: null, memoryBytes: null, peakMemoryBytes: run.peakMemoryBytes };
  for (const k of DETAILED_USAGE) usage[k] = run[k] ?? null;
  return Object.entries(usage).every(([, v]) => v === null) ? null : usage;
}

/** The stored reported metrics (a JSON column): well-formed entries only. */
function reportedMetricsOf(json: unknown): ReportedMetric[] {
  if (!Array.isArray(json)) return [];
  return json.flatMap((m): ReportedMetric[] =>
    m && typeof m === 'object' && typeof m.name === 'string' && typeof m.value === 'number' && Number.isFinite(m.value)
      ? [{ name: m.name, value: m.value, unit: typeof m.unit === 'string' ? m.unit : null }]
      : [],
  );
}

/** Artifacts a result carries (in a query's first page and in a live event); the rest are queried by page. */
export const ARTIFACTS_IN_VIEW = 100;

type ArtifactFields = Pick<ArtifactModel, 'id' | 'name' | 'kind' | 'sizeBytes' | 'sha256'>;

/** Artifacts in the order pages are read: by name as UTF-8 bytes (the SQL's COLLATE "C"), then id. */
export function byArtifactOrder(a: ArtifactFields, b: ArtifactFields): number {
  return Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

export function artifactView(a: ArtifactFields): ResultView['artifacts'][number] {
  return { id: a.id, name: a.name, kind: a.kind, sizeBytes: a.sizeBytes, sha256: a.sha256, url: `/artifacts/${a.id}` };
}

/**
 * The result of a run with its first ARTIFACTS_IN_VIEW artifacts (in page order) and their count:
 * a test with 20,000 artifacts must not put them all in one event or one response.
 */
export function resultView(run: RunFields & { id: string; artifacts: ArtifactFields[]; artifactCount?: number }): ResultView {
  const first = run.artifacts.length > ARTIFACTS_IN_VIEW ? [...run.artifacts].sort(byArtifactOrder).slice(0, ARTIFACTS_IN_VIEW) : [...run.artifacts].sort(byArtifactOrder);
  return {
    runId: run.id,
    artifactCount: run.artifactCount ?? run.artifacts.length,
    exitCode: run.exitCode,
    signal: run.signal,
    stdout: run.stdout,
    stderr: run.stderr,
    outputTruncated: run.outputTruncated,
    durationMs: run.durationMs,
    timedOut: run.timedOut,
    errorMessage: run.errorMessage,
    metrics: runUsage(run),
    reportedMetrics: reportedMetricsOf(run.reportedMetrics),
    artifacts: first.map(artifactView),
  };
}

export function environmentView(e: EnvironmentModel): EnvironmentView {
  return {
    id: e.id,
    pool: e.pool,
    kind: e.kind,
    status: e.status,
    host: e.host,
    arch: e.arch,
    cpus: e.cpus,
    memoryMb: e.memoryMb,
    image: e.image,
    tags: e.tags,
    currentTestId: e.currentTestId,
    testsRun: e.testsRun,
    failures: e.failures,
  };
}
