import { randomUUID } from 'node:crypto';
import type { ArtifactKind } from '../domain/enums';
import { withoutNul } from '../domain/output-text';
import type { TestStatus } from '../domain/status';
import type { ReportedMetric } from '../views/view.types';
import type { TestView } from '../views/view.types';
import type { PrismaClient } from '../generated/prisma/client';
import { testView, type TestRow } from '../views/view.mappers';
import { BLOB_LOCK } from './artifacts.repository';

/** The columns of a TestView, as RETURNING gives them. */
const TEST_COLUMNS = `"id", "plan_id" AS "planId", "name", "type", "status", "attempts", "pool", "priority", "queued_at" AS "queuedAt",
  "started_at" AS "startedAt", "finished_at" AS "finishedAt", "environment_id" AS "environmentId", "requirements"`;

/** ~0.45 ms a row through Prisma on PGlite: ~45 ms of the event loop per insert. */
export const ARTIFACT_ROWS_PER_INSERT = 100;

export interface RunResult {
  status: TestStatus;
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  outputTruncated: boolean;
  timedOut: boolean;
  durationMs: number;
  errorMessage: string | null;
  infrastructure: boolean;
  cpuTimeMs: number | null;
  peakMemoryBytes: number | null;
  userCpuMs: number | null;
  systemCpuMs: number | null;
  voluntaryContextSwitches: number | null;
  involuntaryContextSwitches: number | null;
  readBytes: number | null;
  writeBytes: number | null;
  /** What the test reported itself (checked by the driver: finite values, bounded names). */
  reportedMetrics: ReportedMetric[];
}

export interface StoredArtifact {
  name: string;
  kind: ArtifactKind;
  sizeBytes: number;
  sha256: string;
  storageKey: string;
}

/** One TestRun row per attempt; written by the worker that runs the attempt. */
export class RunsRepository {
  /** `now`: the clock of the services (ServiceDeps.now), for every time this repository writes. */
  constructor(
    private readonly prisma: PrismaClient,
    private readonly now: () => Date,
  ) {}

  /**
   * The start of an attempt in one statement: the test moves to RUNNING (attempt + 1) only while it is
   * still in `from` at `attempt`, and the attempt's run row is written with it. null: the guard failed.
   */
  async startAttempt(
    testId: string,
    guard: { from: TestStatus; attempt: number },
    environmentId: string,
    workerId: string,
    imageDigest: string | null = null,
  ): Promise<{ test: TestView; runId: string } | null> {
    const rows = await this.prisma.$queryRawUnsafe<(TestRow & { runId: string })[]>(
      `WITH t AS (
         UPDATE "test_case" SET "status" = 'RUNNING', "attempts" = "attempts" + 1, "started_at" = $7::timestamptz, "finished_at" = NULL,
                "environment_id" = $3::uuid
          WHERE "id" = $1::uuid AND "status" = $2::"TestStatus" AND "attempts" = $4
         RETURNING ${TEST_COLUMNS}
       ), r AS (
         INSERT INTO "test_run" ("id", "test_id", "attempt", "environment_id", "worker_id", "status", "started_at", "image_digest")
         SELECT $5::uuid, t."id", t."attempts", $3::uuid, $6, 'RUNNING', $7::timestamptz, $8 FROM t
         ON CONFLICT ("test_id", "attempt") DO UPDATE SET "environment_id" = EXCLUDED."environment_id", "worker_id" = EXCLUDED."worker_id",
           "status" = 'RUNNING', "started_at" = $7::timestamptz, "finished_at" = NULL, "image_digest" = EXCLUDED."image_digest"
         RETURNING "id"
       )
       SELECT t.*, (SELECT "id" FROM r) AS "runId" FROM t`,
      testId,
      guard.from,
      environmentId,
      guard.attempt,
      randomUUID(),
      workerId,
      this.now().toISOString(),
      imageDigest,
    );
    return rows.length ? { test: testView(rows[0]), runId: rows[0].runId } : null;
  }

  /**
   * A test that cannot run (the image it needs failed to build) ends in ERROR in one statement: only
   * while it is still `guard.from` at `guard.attempt`, with a run row (attempt + 1, no environment) that
   * holds the message. null: it moved on meanwhile.
   */
  async refuse(testId: string, guard: { from: 'QUEUED' | 'RUNNING'; attempt: number }, errorMessage: string): Promise<TestView | null> {
    const now = this.now().toISOString();
    const rows = await this.prisma.$queryRawUnsafe<TestRow[]>(
      `WITH t AS (
         UPDATE "test_case" SET "status" = 'ERROR', "attempts" = "attempts" + 1, "finished_at" = $4::timestamptz, "environment_id" = NULL
          WHERE "id" = $1::uuid AND "status" = $6::"TestStatus" AND "attempts" = $2
         RETURNING ${TEST_COLUMNS}
       ), r AS (
         INSERT INTO "test_run" ("id", "test_id", "attempt", "status", "error_message", "infrastructure", "started_at", "finished_at")
         SELECT $5::uuid, t."id", t."attempts", 'ERROR', $3, true, $4::timestamptz, $4::timestamptz FROM t
         ON CONFLICT ("test_id", "attempt") DO UPDATE SET "status" = 'ERROR', "error_message" = EXCLUDED."error_message", "finished_at" = EXCLUDED."finished_at"
         RETURNING "id"
       )
       SELECT t.* FROM t`, // a data-modifying WITH runs whether or not it is read
      testId,
      guard.attempt,
      errorMessage,
      now,
      randomUUID(),
      guard.from,
    );
    return rows.length ? testView(rows[0]) : null;
  }

  /**
   * The end of an attempt in one statement: its run row gets the result (once), and the test moves to
   * `to` (default: the result's status) only while it is RUNNING at `attempt` (the fence). QUEUED hands
   * the test back (no environment, not finished). Returns the test, or null when fenced.
   */
  async finishAttempt(testId: string, attempt: number, runId: string, result: RunResult, to: TestStatus = result.status): Promise<TestView | null> {
    const r = storable(result);
    const rows = await this.prisma.$queryRawUnsafe<TestRow[]>(
      `WITH r AS (
         UPDATE "test_run" SET "status" = $3::"TestStatus", "exit_code" = $4, "signal" = $5, "stdout" = $6, "stderr" = $7,
                "output_truncated" = $8, "timed_out" = $9, "duration_ms" = $10, "error_message" = $11, "infrastructure" = $12,
                "cpu_time_ms" = $13, "peak_memory_bytes" = $14, "finished_at" = $17::timestamptz,
                "user_cpu_ms" = $18, "system_cpu_ms" = $19, "voluntary_context_switches" = $20, "involuntary_context_switches" = $21,
                "read_bytes" = $22, "write_bytes" = $23, "reported_metrics" = $24::jsonb
          WHERE "id" = $2::uuid AND "finished_at" IS NULL
         RETURNING "id"
       )
       UPDATE "test_case" SET "status" = $16::"TestStatus",
              "finished_at" = CASE WHEN $16::"TestStatus" = 'QUEUED' THEN NULL ELSE $17::timestamptz END,
              "environment_id" = CASE WHEN $16::"TestStatus" = 'QUEUED' THEN NULL ELSE "environment_id" END
        WHERE "id" = $1::uuid AND "status" = 'RUNNING' AND "attempts" = $15
       RETURNING ${TEST_COLUMNS}`,
      testId,
      runId,
      r.status,
      r.exitCode,
      r.signal,
      r.stdout,
      r.stderr,
      r.outputTruncated,
      r.timedOut,
      r.durationMs,
      r.errorMessage,
      r.infrastructure,
      r.cpuTimeMs,
      r.peakMemoryBytes,
      attempt,
      to,
      this.now().toISOString(),
      r.userCpuMs,
      r.systemCpuMs,
      r.voluntaryContextSwitches,
      r.involuntaryContextSwitches,
      r.readBytes,
      r.writeBytes,
      JSON.stringify(r.reportedMetrics),
    );
    return rows.length ? testView(rows[0]) : null;
  }

  /**
   * Inserts the rows in chunks of ARTIFACT_ROWS_PER_INSERT, yielding to the event loop between them:
   * on the embedded database (in this thread) one insert of 20,000 rows held the API for ~9 s. Each
   * chunk holds the blob lock shared (artifacts.repository.ts BLOB_LOCK): once this returns, no remover
   * can have judged these rows' blobs unreferenced without removing them before (the caller then checks
   * they are still stored).
   */
  async addArtifacts(runId: string, artifacts: StoredArtifact[]): Promise<(StoredArtifact & { id: string })[]> {
    const withIds = artifacts.map((a) => ({ id: randomUUID(), runId, ...a }));
    for (let i = 0; i < withIds.length; i += ARTIFACT_ROWS_PER_INSERT) {
      if (i > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      await this.prisma.$transaction([
        this.prisma.$queryRawUnsafe(`SELECT pg_advisory_xact_lock_shared(${BLOB_LOCK})::text`),
        this.prisma.artifact.createMany({ data: withIds.slice(i, i + ARTIFACT_ROWS_PER_INSERT) }),
      ]);
    }
    return withIds;
  }

  /**
   * Records what happened to one attempt (also a stale one: the test row itself is fenced separately).
   * Returns the artifacts with their ids.
   */
  async finish(runId: string, result: RunResult, artifacts: StoredArtifact[]): Promise<(StoredArtifact & { id: string })[]> {
    const r = storable(result);
    const withIds = artifacts.map((a) => ({ id: randomUUID(), runId, ...a }));
    const update = this.prisma.testRun.updateMany({
        where: { id: runId, finishedAt: null }, // a run is written once: a lost attempt's late result does not replace its record
        data: {
          status: r.status,
          exitCode: r.exitCode,
          signal: r.signal,
          stdout: r.stdout,
          stderr: r.stderr,
          outputTruncated: r.outputTruncated,
          timedOut: r.timedOut,
          durationMs: r.durationMs,
          errorMessage: r.errorMessage,
          infrastructure: r.infrastructure,
          cpuTimeMs: r.cpuTimeMs,
          peakMemoryBytes: r.peakMemoryBytes,
          userCpuMs: r.userCpuMs,
          systemCpuMs: r.systemCpuMs,
          voluntaryContextSwitches: r.voluntaryContextSwitches,
          involuntaryContextSwitches: r.involuntaryContextSwitches,
          readBytes: r.readBytes,
          writeBytes: r.writeBytes,
          reportedMetrics: r.reportedMetrics as unknown as object[],
          finishedAt: this.now(),
        },
      });
    if (withIds.length) await this.prisma.$transaction([update, this.prisma.artifact.createMany({ data: withIds })]);
    else await update;
    return withIds;
  }

  /**
   * An attempt whose worker was lost, in one statement: the test moves to `to` (QUEUED: handed back;
   * ERROR: finished; RUNNING: left for the worker taking it over) only while it is RUNNING at `attempt`
   * (the fence), and then the attempt's run row, if still open, is closed as an infrastructure ERROR.
   * Returns the test, or null when fenced (the test moved on: nothing is written).
   */
  async loseAttempt(testId: string, attempt: number, errorMessage: string, to: 'QUEUED' | 'ERROR' | 'RUNNING'): Promise<TestView | null> {
    const rows = await this.prisma.$queryRawUnsafe<TestRow[]>(
      `WITH t AS (
         UPDATE "test_case" SET "status" = $3::"TestStatus",
                "finished_at" = CASE WHEN $3::"TestStatus" = 'ERROR' THEN $5::timestamptz ELSE "finished_at" END,
                "environment_id" = CASE WHEN $3::"TestStatus" = 'QUEUED' THEN NULL ELSE "environment_id" END
          WHERE "id" = $1::uuid AND "status" = 'RUNNING' AND "attempts" = $2
         RETURNING ${TEST_COLUMNS}
       ), r AS (
         UPDATE "test_run" SET "status" = 'ERROR', "infrastructure" = true, "error_message" = $4, "finished_at" = $5::timestamptz
          WHERE "test_id" = $1::uuid AND "attempt" = $2 AND "finished_at" IS NULL AND EXISTS (SELECT 1 FROM t)
         RETURNING "id"
       )
       SELECT t.* FROM t`,
      testId,
      attempt,
      to,
      withoutNul(errorMessage),
      this.now().toISOString(),
    );
    return rows.length ? testView(rows[0]) : null;
  }

  async artifact(id: string): Promise<{ name: string; storageKey: string } | null> {
    return this.prisma.artifact.findUnique({ where: { id }, select: { name: true, storageKey: true } });
  }
}

/** Text columns cannot hold NUL: whatever path a result took (an error message quoting the sandbox), none reaches them. */
function storable(r: RunResult): RunResult {
  return {
    ...r,
    stdout: withoutNul(r.stdout),
    stderr: withoutNul(r.stderr),
    signal: r.signal === null ? null : withoutNul(r.signal),
    errorMessage: r.errorMessage === null ? null : withoutNul(r.errorMessage),
  };
}
