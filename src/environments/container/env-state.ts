// What the container driver keeps for each environment, and the part of the driver a run needs.

import type { CpuReservations } from '../cgroups/cpu-reservations';
import type { CgroupLayout } from '../cgroups/layout';
import type { RunCgroup } from '../cgroups/run-cgroup';
import type { EnvironmentHandle } from '../driver';
import type { DriverLogger } from './image';
import type { SeccompProfile } from './seccomp';
import type { SecurityAuditor } from './security-audit';
import type { InputsHost, MountedInputs } from './work-inputs';
import type { WorkFs } from './work-fs';

/** The container driver's handle: the common one and the host directory of the environment's state. */
export interface ContainerHandle extends EnvironmentHandle {
  /** `<stateDir>/<instance>/<id>`: work and control dirs (and the disk image) are below it. */
  readonly stateDir: string;
}

export interface ActiveRun {
  cgroup: RunCgroup | null;
  startedAt: number;
  lastCpu: { cpuMs: number; at: number } | null;
  abort: (reason: 'destroy' | 'reset') => void;
  done: Promise<unknown>;
}

export interface EnvState {
  handle: ContainerHandle;
  /** The environment's own filesystem (work and ctl dirs live on it); null: plain dirs, no disk limit. */
  disk: WorkFs | null;
  workDir: string;
  ctlDir: string;
  runSeq: number;
  active: ActiveRun | null;
  /** The bundle's overlay mounted over workDir for the last run (work-inputs.ts); the reset unmounts it. */
  inputs: MountedInputs | null;
  /** A run group of this environment could not be removed: reset sweeps the environment's groups. */
  strayGroups: boolean;
}

/** What run.ts needs of its driver. */
export interface ContainerHost {
  readonly logger: DriverLogger;
  readonly imageDir: string;
  readonly bwrapPath: string;
  /** Time the phases of runs and resets and log them (the phaseTimings option). */
  readonly phaseTimings: boolean;
  /** This instance's own parent group: run groups are below it. */
  readonly cgroupParent: string;
  /** The prepared cgroup layout; null when cgroups are disabled. */
  cgroupLayout(): Promise<CgroupLayout> | null;
  /** The host-wide CPU reservations (prepared); null when cgroups are disabled. */
  cpuReservations(): Promise<CpuReservations> | null;
  /** The BPF program of `profile` as a file; null: no table for this architecture. */
  seccompFilterFile(profile: SeccompProfile): Promise<string | null>;
  /** Logs once that runs go without a seccomp filter. */
  warnNoSeccomp(): void;
  /** argv prefix that drops to the sandbox user before bwrap (empty when not running as root). */
  dropPrivileges(): string[];
  makeSandboxDir(dir: string): Promise<void>;
  makeSandboxDirSync(dir: string): void;
  /** The host path of the native runner to bind into the sandbox; null: the perl runner (native-runner.ts). */
  nativeRunner(): Promise<string | null>;
  /** Audits SECURITY runs (security-audit.ts). */
  securityAuditor(): SecurityAuditor;
  /** What filling a run's work dir needs (work-inputs.ts): the bundle copies, the owner of the files. */
  readonly inputs: InputsHost;
}
