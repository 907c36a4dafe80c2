// The one interface every environment driver (container sandbox, QEMU VM) implements. It speaks of
// what every environment has (an opaque handle, a working directory, limits, an isolation level);
// what one driver can do and another cannot it declares in its capabilities. Drivers are made by
// kind from their own configuration section (registry.ts). A shared conformance suite
// (test/conformance/) runs the same expectations against each driver.

import type { ReportedMetric } from './reported-metrics';

export type { ReportedMetric };

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

/** Where a test's script runs and its artifacts are collected from, in every environment (also HOME). */
export const WORK_DIR = '/work';

/**
 * A live environment owned by a driver. `id` is the Environment row id. Opaque: the driver keeps what
 * it needs behind the id (a driver may hand out a richer object of its own, JSON-safe); callers pass
 * it back as they got it and read nothing but `id` and `shape`.
 */
export interface EnvironmentHandle {
  readonly id: string;
  readonly shape: EnvironmentShape;
}

/**
 * How strongly a run is isolated. `standard`: its own machine view (processes, files, network but
 * loopback), no privileges, the shape's limits. `hardened` (security tests): that, and the driver's
 * stricter confinement (for the container driver a stricter system-call filter).
 */
export type Isolation = 'standard' | 'hardened';

/** A health check's answer: why it failed, in words, when it did. */
export type HealthStatus = { ok: true } | { ok: false; reason: string };

/** What a driver can do; the conformance suite and the scheduler skip what a driver does not offer. */
export interface DriverCapabilities {
  /** The working directory's disk is limited to shape.diskMb (writes beyond fail, `diskFull` is reported). */
  diskLimit: boolean;
  /** The shape's memory, CPU and process limits hold, and CPU time and peak memory are reported. */
  resourceLimits: boolean;
  /**
   * RunSpec.dedicatedCpus gives a run CPUs of its own: no other run of any driver on the host that
   * shares its reservations uses them while it runs.
   */
  dedicatedCpus: boolean;
  /**
   * A run's outcome also has user and system CPU time, context switches and storage bytes
   * (RunOutcome.userCpuMs…writeBytes; each null where the kernel does not give it).
   */
  detailedMetrics: boolean;
  /** RunSpec.services are started (and killed) with the run, their logs collected. */
  services: boolean;
  /** A crashing process leaves a core dump in the working directory, collected as CORE_DUMP. */
  coreDumps: boolean;
}

export interface ServiceSpec {
  name: string;
  command: string;
  /** Shell command that exits 0 once the service is ready; polled until the run's deadline. */
  readyCheck?: string;
}

export type OutputStream = 'stdout' | 'stderr';

/**
 * The image version one run uses, chosen by the worker (the test's image, at its current version when
 * the attempt began): its root filesystem on this host, read-only to the run.
 */
export interface RunImage {
  name: string;
  /** "sha256:…" of the version. */
  digest: string;
  /** Absolute host path of its root filesystem. */
  rootfs: string;
}

/** A file put in the working directory before the script runs. */
export interface RunFile {
  /** Relative to the working directory (checked: no "..", not absolute); its directories are made. */
  path: string;
  /** The bytes, base64: a RunSpec crosses a process boundary as JSON. */
  base64: string;
  executable: boolean;
}

/**
 * What a run's working directory holds when its script starts: the bundle's files, then `files` over
 * them. The run gets a private, writable copy owned by the test's user (what it changes no other run
 * sees); the bundle directory itself is never written. Both count against the shape's disk.
 */
export interface RunInputs {
  /** Absolute host path of an unpacked bundle (a directory on this host, read-only to the driver). */
  bundleDir?: string;
  /** Files over the bundle, each path once (the worker merged the plan's and the test's). */
  files: RunFile[];
}

export interface RunSpec {
  testId: string;
  attempt: number;
  /** Run by /bin/sh in the environment; a #! line picks another interpreter. */
  script: string;
  /** The working directory's starting content; absent: empty. */
  inputs?: RunInputs;
  /** The image to run in; absent: the shape's image at its current version. */
  image?: RunImage;
  env: Record<string, string>;
  timeoutMs: number;
  services: ServiceSpec[];
  /** Relative paths or globs in the working directory, copied out after the run. */
  artifactPaths: string[];
  /** Host directory where collected artifacts (and core dumps) are written. */
  artifactDir: string;
  /** Caps on what is collected; default DEFAULT_ARTIFACT_LIMITS (container/artifacts.ts). */
  artifactLimits?: ArtifactLimits;
  /** Bytes of stdout and of stderr kept each in the outcome (stdout/stderr, stdoutBytes); the rest is counted and dropped. */
  maxOutputBytes: number;
  /**
   * Bytes of each complete log (stdout.log, stderr.log, service-<name>.log, written into artifactDir);
   * beyond it a log is cut with a marker line (run-logs.ts). Default DEFAULT_MAX_LOG_BYTES.
   */
  maxLogBytes?: number;
  /**
   * Performance tests: this many CPUs that no other run uses while this one runs (capability
   * `dedicatedCpus`). The driver reserves them host-wide, waiting while they are taken (before the
   * script starts: the wait is not part of its time or timeout).
   */
  dedicatedCpus?: number;
  /** Default 'standard'; security tests run 'hardened'. */
  isolation?: Isolation;
  onOutput?: (stream: OutputStream, chunk: Buffer) => void;
  /** Aborting kills the whole process tree of the run (cancel, shutdown). */
  signal?: AbortSignal;
}

/**
 * The variable every run finds set to the path of a file it may write its own figures to (JSON, see
 * reported-metrics.ts); the driver reads it after the run.
 */
export const METRICS_FILE_ENV = 'METRICS_FILE';

/**
 * A file of the run in artifactDir. Every run has the LOG files `stdout.log` and `stderr.log` (the
 * complete streams, up to RunSpec.maxLogBytes) and one `service-<name>.log` per service that wrote one.
 */
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
  /** Wall time of the run, from the start of the sandbox to its end. */
  durationMs: number;
  /** CPU time of every process of the run (user + system). */
  cpuTimeMs: number | null;
  peakMemoryBytes: number | null;
  /** CPU time of the run's processes in user mode and in the kernel (capability `detailedMetrics`). */
  userCpuMs?: number | null;
  systemCpuMs?: number | null;
  /** Context switches of the script and the processes it waited for: waits (voluntary) and preemptions. */
  voluntaryContextSwitches?: number | null;
  involuntaryContextSwitches?: number | null;
  /** Bytes the script and the processes it waited for had the storage layer read, and write (counted when dirtied). */
  readBytes?: number | null;
  writeBytes?: number | null;
  /** The test's own figures: `##metric` lines on stdout, then $METRICS_FILE (reported-metrics.ts). */
  reportedMetrics?: ReportedMetric[];
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
  /** What the failed attempt leaves for whoever looks into it (a VM's serial console log), in artifactDir. */
  files: CollectedFile[] = [];
  constructor(message: string, options?: { cause?: unknown; files?: CollectedFile[] }) {
    super(message, options);
    if (options?.files) this.files = options.files;
  }
}

export interface EnvironmentDriver {
  readonly kind: EnvironmentKind;
  readonly capabilities: DriverCapabilities;
  /** Checks the host can run this driver (binaries, images); throws a clear Error naming what is missing. */
  preflight(shape: EnvironmentShape): Promise<void>;
  /**
   * Makes a fresh environment `id` of `shape` (a boot, for a VM). Aborting `signal` stops it: what
   * was made is removed and the promise rejects.
   */
  provision(id: string, shape: EnvironmentShape, signal?: AbortSignal): Promise<EnvironmentHandle>;
  run(env: EnvironmentHandle, spec: RunSpec): Promise<RunOutcome>;
  /** Throws away everything the last run left (writable layer, processes); ready for the next run. */
  reset(env: EnvironmentHandle): Promise<void>;
  /** Whether the environment can run a test now; when not, why. Never throws for an unhealthy environment. */
  healthCheck(env: EnvironmentHandle): Promise<HealthStatus>;
  usage(env: EnvironmentHandle): Promise<ResourceUsage | null>;
  destroy(env: EnvironmentHandle): Promise<void>;
  /** Releases what the driver holds for all its environments (its own scratch and cgroup parents). */
  close?(): Promise<void>;
}
