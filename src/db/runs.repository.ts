import { randomUUID } from 'node:crypto';
import type { TestStatus } from '../domain/status';
import type { PrismaClient } from '../generated/prisma/client';

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
}

export interface StoredArtifact {
  name: string;
  kind: 'LOG' | 'CORE_DUMP' | 'FILE';
  sizeBytes: number;
  sha256: string;
  storageKey: string;
}

/** One TestRun row per attempt; written by the worker that runs the attempt. */
export class RunsRepository {
  constructor(private readonly prisma: PrismaClient) {}

  async start(testId: string, attempt: number, environmentId: string | null, workerId: string): Promise<string> {
    const row = await this.prisma.testRun.upsert({
      where: { testId_attempt: { testId, attempt } },
      create: { id: randomUUID(), testId, attempt, environmentId, workerId, status: 'RUNNING' },
      update: { environmentId, workerId, status: 'RUNNING', startedAt: new Date() },
      select: { id: true },
    });
    return row.id;
  }

  /**
   * Records what happened to one attempt (also a stale one: the test row itself is fenced separately).
   * Returns the artifacts with their ids.
   */
  async finish(runId: string, r: RunResult, artifacts: StoredArtifact[]): Promise<(StoredArtifact & { id: string })[]> {
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
          finishedAt: new Date(),
        },
      });
    if (withIds.length) await this.prisma.$transaction([update, this.prisma.artifact.createMany({ data: withIds })]);
    else await update;
    return withIds;
  }

  /** An attempt whose worker was lost: its run row is closed as an infrastructure ERROR (if still open). */
  async finishLost(testId: string, attempt: number, errorMessage: string): Promise<void> {
    await this.prisma.testRun.updateMany({
      where: { testId, attempt, finishedAt: null },
      data: { status: 'ERROR', infrastructure: true, errorMessage, finishedAt: new Date() },
    });
  }

  async artifact(id: string): Promise<{ name: string; storageKey: string } | null> {
    return this.prisma.artifact.findUnique({ where: { id }, select: { name: true, storageKey: true } });
  }
}
