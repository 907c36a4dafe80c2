// The one interface every environment driver (container sandbox, QEMU VM) implements.
// A shared conformance suite (test/conformance/) runs the same expectations against each driver.

export type EnvironmentKind = 'CONTAINER' | 'QEMU';

/** What a pool offers; the resource manager provisions environments of this shape. */
export interface EnvironmentShape {
  pool: string;
  kind: EnvironmentKind;
  arch: string;
  cpus: number;
  memoryMb: number;
  /** Name of a base image in the image cache (IMAGE_DIR/<image>). */
  image: string;
  /** Maximum number of processes (and threads) inside one environment. */
  pids: number;
  /** Disk of one environment's working directory in MiB, enforced by the kernel; default DEFAULT_DISK_MB. */
  diskMb?: number;
}

/** Disk of an environment whose shape gives none. */
export const DEFAULT_DISK_MB = 2048;

/** What one test may leave as artifacts; beyond it files are left out (and the result says so). */
export interface ArtifactLimits {
  /** Bytes of all collected files together. */
  maxBytes: number;
  /** Number of collected files (core dumps and service logs included). */
  maxFiles: number;
}

/** A live environment owned by a driver. `id` is the Environment row id. */
export interface EnvironmentHandle {
  id: string;
  shape: EnvironmentShape;
  /** Host directory the driver may use for this environment's scratch state. */
  stateDir: string;
}

export interface ServiceSpec {
  name: string;
  command: string;
  /** Shell command that exits 0 once the service is ready; polled until the run's deadline. */
  readyCheck?: string;
}

export type OutputStream = 'stdout' | 'stderr';

export interface RunSpec {
  testId: string;
  attempt: number;
  /** Run by /bin/sh in the environment; a #! line picks another interpreter. */
  script: string;
  env: Record<string, string>;
  timeoutMs: number;
  services: ServiceSpec[];
  /** Relative paths or globs in the working directory, copied out after the run. */
  artifactPaths: string[];
  /** Host directory where collected artifacts (and core dumps) are written. */
  artifactDir: string;
  /** Caps on what is collected; default DEFAULT_ARTIFACT_LIMITS (container/artifacts.ts). */
  artifactLimits?: ArtifactLimits;
  /** Bytes of stdout and of stderr kept each; the rest is counted and dropped. */
  maxOutputBytes: number;
  /** Performance tests: pin to dedicated CPUs. */
  dedicatedCpus?: number[];
  /** Security tests: seccomp filter and extra hardening. */
  hardened?: boolean;
  onOutput?: (stream: OutputStream, chunk: Buffer) => void;
  /** Aborting kills the whole process tree of the run (cancel, shutdown). */
  signal?: AbortSignal;
}

export interface CollectedFile {
  name: string;
  kind: 'FILE' | 'CORE_DUMP' | 'LOG';
  /** Absolute host path inside artifactDir. */
  path: string;
  sizeBytes: number;
}

export interface RunOutcome {
  /** null when killed by a signal or never started. */
  exitCode: number | null;
  /** e.g. "SIGSEGV", "SIGKILL" when the script was killed by a signal. */
  signal: string | null;
  timedOut: boolean;
  /** The run was aborted through RunSpec.signal. */
  aborted: boolean;
  /** The memory limit was hit (the kernel's OOM killer ended a process). */
  oomKilled: boolean;
  /** Forks were refused at the process limit (pids): a fork bomb, or a test that needs more processes. */
  pidsLimitHit?: boolean;
  /** The kept bytes decoded as UTF-8 (lossy for binary output); `stdoutBytes` is what the test wrote. */
  stdout: string;
  stderr: string;
  /** The kept bytes exactly as the test wrote them (at most RunSpec.maxOutputBytes each). */
  stdoutBytes: Buffer;
  stderrBytes: Buffer;
  outputTruncated: boolean;
  durationMs: number;
  cpuTimeMs: number | null;
  peakMemoryBytes: number | null;
  files: CollectedFile[];
  /** The working directory's disk was full when the run ended (writes failed with ENOSPC). */
  diskFull?: boolean;
  /** What artifact collection left out or cut, one short sentence each (at most ~10). */
  artifactNotes?: string[];
}

export interface ResourceUsage {
  cpuTimeMs: number | null;
  cpuPercent: number | null;
  memoryBytes: number | null;
  peakMemoryBytes: number | null;
}

/**
 * A fault of the environment, not of the test: the test is retried elsewhere and the environment
 * is marked UNHEALTHY. Anything the test script does wrong is a RunOutcome, never this.
 */
export class InfrastructureError extends Error {
  override readonly name = 'InfrastructureError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export interface EnvironmentDriver {
  readonly kind: EnvironmentKind;
  /** Checks the host can run this driver (binaries, images); throws a clear Error naming what is missing. */
  preflight(shape: EnvironmentShape): Promise<void>;
  provision(id: string, shape: EnvironmentShape): Promise<EnvironmentHandle>;
  run(env: EnvironmentHandle, spec: RunSpec): Promise<RunOutcome>;
  /** Throws away everything the last run left (writable layer, processes); ready for the next run. */
  reset(env: EnvironmentHandle): Promise<void>;
  healthCheck(env: EnvironmentHandle): Promise<boolean>;
  usage(env: EnvironmentHandle): Promise<ResourceUsage | null>;
  destroy(env: EnvironmentHandle): Promise<void>;
  /** Releases what the driver holds for all its environments (its own scratch and cgroup parents). */
  close?(): Promise<void>;
}
