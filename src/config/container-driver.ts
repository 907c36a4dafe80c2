// The container driver's configuration section: where its programs are, where it keeps state, which
// cgroups it uses. Parsed once here (CONTAINER_* variables, IMAGE_DIR, SANDBOX_USER); the driver, in
// process or in its driver host, gets the parsed section and never reads the environment.

import path from 'node:path';
import { z } from 'zod';

export const DEFAULT_BWRAP_PATH = '/usr/bin/bwrap';
export const DEFAULT_SETPRIV_PATH = '/usr/bin/setpriv';
export const DEFAULT_CGROUP_ROOT = '/sys/fs/cgroup';
export const DEFAULT_CGROUP_PARENT = 'test-orchestrator';

const absolutePath = z.string().min(1).refine((p) => path.isAbsolute(p) && !p.includes('\0'), 'an absolute path');
const NOT_ROOT = 'must be a positive integer (not root)';
const hostId = z.number({ error: NOT_ROOT }).int({ error: NOT_ROOT }).min(1, { error: NOT_ROOT }).max(0xfffffffe, { error: NOT_ROOT });
const cgroupPath = z
  .string()
  .regex(/^[A-Za-z0-9_-][A-Za-z0-9._-]*(\/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$/, 'a cgroup path below the root: names of letters, digits, ".", "_" and "-" separated by "/", no "." or ".."');

/** The section as the driver gets it (JSON-safe: it crosses to the driver host as it is). */
export const containerDriverConfigSchema = z.object({
  /** Image cache: IMAGE_DIR/<shape.image>/rootfs. */
  imageDir: absolutePath,
  /** bubblewrap (Debian package `bubblewrap`). */
  bwrapPath: absolutePath.default(DEFAULT_BWRAP_PATH),
  /** util-linux `setpriv`, which drops to the sandbox user when the driver runs as root. */
  setprivPath: absolutePath.default(DEFAULT_SETPRIV_PATH),
  /**
   * Where environments keep their work and control dirs (a per-instance subdirectory of it); unset:
   * `<os tmpdir>/test-orchestrator/container`. The sandbox user must be able to traverse it.
   */
  stateDir: absolutePath.optional(),
  /** Host uid/gid bwrap runs as when the driver runs as root; default 65534/65534 (nobody/nogroup). */
  sandboxUid: hostId.optional(),
  sandboxGid: hostId.optional(),
  /** cgroup mount point. */
  cgroupRoot: absolutePath.default(DEFAULT_CGROUP_ROOT),
  /** Parent group (relative to each hierarchy root) shared by every driver on the host. */
  cgroupParent: cgroupPath.default(DEFAULT_CGROUP_PARENT),
  /**
   * Where performance tests reserve their CPUs (a lock file per CPU): the same for every driver on the
   * host; unset: /run/test-orchestrator/cpus as root, else <os tmpdir>/test-orchestrator-<uid>/cpus.
   */
  cpuLockDir: absolutePath.optional(),
  /** Run without cgroups (no limits, no accounting, killing by PID namespace only): benchmarks only. */
  disableCgroups: z.boolean().default(false),
  /** preflight builds a missing image (logging progress) instead of failing. */
  buildMissingImages: z.boolean().default(false),
  /**
   * The sandbox's runner is a small static program compiled once per host (native-runner.ts) when a C
   * compiler is there; false: the perl runner always (it costs ~4 ms more CPU per run).
   */
  nativeRunner: z.boolean().default(true),
  /** Each run's and reset's phases (ms) in its log lines (`phases`): where a run's time goes. Debugging and benchmarks. */
  phaseTimings: z.boolean().default(false),
});

export type ContainerDriverConfig = z.output<typeof containerDriverConfigSchema>;
/** What a caller may give: everything but imageDir has a default. */
export type ContainerDriverConfigInput = z.input<typeof containerDriverConfigSchema>;

const unsetIfEmpty = (v: unknown) => (v === '' ? undefined : v);
export const flag = (fallback: boolean) =>
  z.preprocess(unsetIfEmpty, z.enum(['true', 'false', '1', '0']).default(fallback ? 'true' : 'false')).transform((v) => v === 'true' || v === '1');
const optional = <T extends z.ZodType>(schema: T) => z.preprocess(unsetIfEmpty, schema.optional());

/**
 * The CONTAINER_* variables (merged into config.ts's environment schema, so that their problems are
 * listed with every other variable's; the section schema above checks the assembled section again).
 */
export const containerDriverEnv = {
  CONTAINER_BWRAP_PATH: optional(absolutePath),
  CONTAINER_SETPRIV_PATH: optional(absolutePath),
  /** Relative: to the working directory of the process. */
  CONTAINER_STATE_DIR: optional(z.string().refine((p) => !p.includes('\0'), 'a path')),
  CONTAINER_CGROUP_ROOT: optional(absolutePath),
  CONTAINER_CGROUP_PARENT: optional(cgroupPath),
  CONTAINER_CPU_LOCK_DIR: optional(absolutePath),
  CONTAINER_DISABLE_CGROUPS: flag(false),
  /** A worker builds a missing image at start (minutes, logged) unless told not to. */
  CONTAINER_BUILD_MISSING_IMAGES: flag(true),
  CONTAINER_NATIVE_RUNNER: flag(true),
  CONTAINER_PHASE_TIMINGS: flag(false),
};

type ContainerEnv = z.output<z.ZodObject<typeof containerDriverEnv>>;

/** Variable of each field, so a problem names what the operator set. */
const VARIABLE_OF: Partial<Record<keyof ContainerDriverConfig, string>> = {
  imageDir: 'IMAGE_DIR',
  bwrapPath: 'CONTAINER_BWRAP_PATH',
  setprivPath: 'CONTAINER_SETPRIV_PATH',
  stateDir: 'CONTAINER_STATE_DIR',
  sandboxUid: 'SANDBOX_USER',
  sandboxGid: 'SANDBOX_USER',
  cgroupRoot: 'CONTAINER_CGROUP_ROOT',
  cgroupParent: 'CONTAINER_CGROUP_PARENT',
  cpuLockDir: 'CONTAINER_CPU_LOCK_DIR',
};

/** The section from the parsed variables; every problem as `VARIABLE: message`. */
export function containerDriverConfigFrom(
  e: ContainerEnv,
  shared: { imageDir: string; sandboxUser: { uid: number; gid: number } },
): { config: ContainerDriverConfig } | { problems: string[] } {
  const parsed = containerDriverConfigSchema.safeParse({
    imageDir: shared.imageDir,
    bwrapPath: e.CONTAINER_BWRAP_PATH,
    setprivPath: e.CONTAINER_SETPRIV_PATH,
    stateDir: e.CONTAINER_STATE_DIR === undefined ? undefined : path.resolve(e.CONTAINER_STATE_DIR),
    sandboxUid: shared.sandboxUser.uid,
    sandboxGid: shared.sandboxUser.gid,
    cgroupRoot: e.CONTAINER_CGROUP_ROOT,
    cgroupParent: e.CONTAINER_CGROUP_PARENT,
    cpuLockDir: e.CONTAINER_CPU_LOCK_DIR,
    disableCgroups: e.CONTAINER_DISABLE_CGROUPS,
    buildMissingImages: e.CONTAINER_BUILD_MISSING_IMAGES,
    nativeRunner: e.CONTAINER_NATIVE_RUNNER,
    phaseTimings: e.CONTAINER_PHASE_TIMINGS,
  });
  if (parsed.success) return { config: parsed.data };
  return {
    problems: parsed.error.issues.map((i) => {
      const field = String(i.path[0] ?? '') as keyof ContainerDriverConfig;
      return `${VARIABLE_OF[field] ?? `container driver ${field}`}: ${i.message}`;
    }),
  };
}
