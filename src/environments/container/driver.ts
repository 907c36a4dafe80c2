// The CONTAINER environment driver: each run is a bubblewrap sandbox on a read-only base image, with
// a per-environment writable work dir, its own namespaces (no network but loopback), uid 65534, no
// capabilities, and a per-run cgroup for limits, accounting and killing the whole tree. Its parts:
// preflight.ts (host checks), run.ts (one run), exit-status.ts, sweep.ts (what dead drivers left),
// host-files.ts; configuration: src/config/container-driver.ts.
//
// When the driver runs as root, bwrap runs as an unprivileged host user (sandboxUid/sandboxGid,
// default 65534 nobody/nogroup; see sandbox-user.ts): uid 65534 inside maps to that uid on the host,
// not to root. The work and control dirs are owned by it; their parents (the state root) are
// root-owned 0711 directories, and the image must be reachable by it (checked in preflight).
//
// Each driver instance keeps its run groups under `<cgroupParent>/<instance>/` and its environments'
// state dirs under `<stateDir>/<instance>/`; its first preflight sweeps what dead processes' instances
// left (sweep.ts); close() removes its own.

import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { containerDriverConfigSchema, type ContainerDriverConfigInput } from '../../config/container-driver';
import { bestEffort } from '../../infra/best-effort';
import { Memo } from '../../infra/memo';
import { phaseTimer } from '../../infra/phase-timer';
import type { CpuReservations } from '../cgroups/cpu-reservations';
import { describeLayout, detectCgroupLayout, prepareCgroupParent, type CgroupLayout } from '../cgroups/layout';
import { removeGroupTree, removeStaleGroups } from '../cgroups/sweep';
import {
  DEFAULT_DISK_MB,
  InfrastructureError,
  type DriverCapabilities,
  type EnvironmentDriver,
  type EnvironmentHandle,
  type EnvironmentShape,
  type HealthStatus,
  type ResourceUsage,
  type RunOutcome,
  type RunSpec,
} from '../driver';
import { containerCapabilities } from './capabilities';
import { defaultCpuLockDir, prepareCpuReservations } from './dedicated-cpus';
import type { ContainerHandle, ContainerHost, EnvState } from './env-state';
import { defaultStateRoot, makeSandboxDir, makeSandboxDirSync, removeDirAndMounts } from './host-files';
import { checkImage, buildHint, type DriverLogger } from './image';
import { newInstanceName } from './instance';
import { defaultNativeDir, NativeRunner } from './native-runner';
import { checkHost, probeDiskLimits } from './preflight';
import { cgroupSafe, runInSandbox } from './run';
import { healthProbe } from './health';
import { prepareSecureDir, resolveSandboxUser, setprivArgs, type SandboxUser } from './sandbox-user';
import { SeccompFiles } from './seccomp-files';
import { SecurityAuditor } from './security-audit';
import { sweepDeadInstances } from './sweep';
import { CTL_FS_MB, createWorkFs, type WorkFs } from './work-fs';
import { BundleLowers } from './bundle-lowers';
import { MountHelper } from './mount-helper';
import { unmountInputs } from './work-inputs';
import { resetEnvironment } from './env-reset';

export type { ContainerHandle } from './env-state';

/** The configuration section (src/config/container-driver.ts; defaults filled here) and a logger. */
export type ContainerDriverOptions = ContainerDriverConfigInput & {
  /** pino-compatible logger; default: silent. */
  logger?: DriverLogger;
};

const SILENT: DriverLogger = { info() {}, warn() {}, error() {} };
const ENV_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export class ContainerDriver implements EnvironmentDriver {
  readonly kind = 'CONTAINER' as const;
  readonly capabilities: DriverCapabilities;

  private readonly imageDir: string;
  private readonly logger: DriverLogger;
  /** Shared by every driver on the host (the stateDir option). */
  private readonly stateBase: string;
  /** This instance's own state dir, `<stateBase>/<instance>`: environments' dirs are below it. */
  private readonly stateRoot: string;
  private readonly cgroupRoot: string;
  /** Shared parent group of every driver on the host (the cgroupParent option). */
  private readonly cgroupBase: string;
  /** This instance's own parent group, `<cgroupBase>/<instance>`: run groups are below it. */
  private readonly cgroupParent: string;
  /** `p<pid>.<start>.<pidns>.<random>` (instance.ts). */
  readonly instance: string;
  private swept: Promise<void> | null = null;
  private readonly useCgroups: boolean;
  private readonly buildMissingImages: boolean;
  /** Host user bwrap runs as; null: the driver's own user (the driver does not run as root). */
  private readonly sandboxUser: SandboxUser | null;
  private readonly bwrapPath: string;
  private readonly setprivPath: string;
  /** The state root, made once: root-owned 0711 components when dropping privileges. */
  private readonly stateRootReady = new Memo<void>(() =>
    this.sandboxUser ? prepareSecureDir(this.stateRoot) : fs.mkdir(this.stateRoot, { recursive: true }).then(() => undefined),
  );
  private readonly envs = new Map<string, EnvState>();
  private readonly layout = new Memo<CgroupLayout>(async () => {
    const layout = await detectCgroupLayout(this.cgroupRoot);
    if (!layout) {
      throw new Error(`no usable cgroup hierarchy under ${this.cgroupRoot} (need cgroup v2 with memory+pids, or v1 memory, pids, cpu, cpuacct)`);
    }
    await prepareCgroupParent(layout, this.cgroupParent);
    return layout;
  });
  /** Host-wide lock files of performance tests' CPUs (cgroups/cpu-reservations.ts). */
  private readonly cpuLockDir: string;
  /** The CPU reservations, prepared once (their lock dir made, the shared cpuset group up to date). */
  private readonly cpus = new Memo<CpuReservations>(async () =>
    prepareCpuReservations({ layout: await this.layout.get(), cgroupBase: this.cgroupBase, lockDir: this.cpuLockDir, secure: this.sandboxUser !== null, log: this.logger }),
  );
  private readonly seccompFiles: SeccompFiles;
  private warnedNoSeccomp = false;
  /** Environments get a loop-mounted filesystem of diskMb (needs root; see work-fs.ts). */
  private readonly diskLimits: boolean;
  /** Once per instance: a small filesystem made, mounted and thrown away, or a clear error. */
  private readonly diskProbe = new Memo<void>(async () => {
    if (!this.diskLimits) {
      this.logger.warn({ instance: this.instance }, 'container driver not running as root: the disk of environments is not limited (diskMb ignored)');
      return;
    }
    await this.ensureStateRoot();
    await probeDiskLimits(this.stateRoot, this.logger).catch((err: Error) => {
      throw new Error(`cannot limit the disk of environments (a loop-mounted ext4 file per environment): ${err.message}`);
    });
  });
  /** What a run needs of this driver (run.ts). */
  private readonly host: ContainerHost;
  private auditor: SecurityAuditor | null = null;
  private readonly bundleLowers: BundleLowers;
  private readonly mounts = new MountHelper();
  private readonly runner: NativeRunner;

  constructor(options: ContainerDriverOptions) {
    if (!options?.imageDir) throw new Error('ContainerDriver: imageDir is required');
    const { logger, ...section } = options;
    const parsed = containerDriverConfigSchema.safeParse({
      ...section,
      imageDir: path.resolve(section.imageDir),
      stateDir: section.stateDir === undefined ? undefined : path.resolve(section.stateDir),
      cgroupParent: section.cgroupParent?.split('/').filter(Boolean).join('/') || undefined,
    });
    if (!parsed.success) throw new Error(`ContainerDriver: ${parsed.error.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ')}`);
    const config = parsed.data;
    this.imageDir = config.imageDir;
    this.logger = logger ?? SILENT;
    this.bwrapPath = config.bwrapPath;
    this.instance = newInstanceName();
    this.stateBase = config.stateDir ?? defaultStateRoot();
    this.stateRoot = path.join(this.stateBase, this.instance);
    this.cgroupRoot = config.cgroupRoot;
    this.cgroupBase = config.cgroupParent;
    this.cgroupParent = `${this.cgroupBase}/${this.instance}`;
    this.cpuLockDir = config.cpuLockDir ?? defaultCpuLockDir();
    this.useCgroups = !config.disableCgroups;
    this.buildMissingImages = config.buildMissingImages;
    this.sandboxUser = resolveSandboxUser(config);
    this.setprivPath = config.setprivPath;
    this.diskLimits = process.getuid?.() === 0;
    this.capabilities = containerCapabilities(config);
    this.seccompFiles = new SeccompFiles(this.stateRoot, () => this.ensureStateRoot());
    this.bundleLowers = new BundleLowers(path.join(this.stateRoot, 'bundles'), this.sandboxUser, this.logger);
    this.runner = new NativeRunner({ enabled: config.nativeRunner, dir: defaultNativeDir(), secure: this.sandboxUser !== null, log: this.logger });
    this.host = {
      logger: this.logger,
      imageDir: this.imageDir,
      bwrapPath: this.bwrapPath,
      phaseTimings: config.phaseTimings,
      cgroupParent: this.cgroupParent,
      cgroupLayout: () => (this.useCgroups ? this.cgroupLayout() : null),
      cpuReservations: () => (this.useCgroups ? this.cpus.get() : null),
      seccompFilterFile: (profile) => this.seccompFiles.get(profile),
      warnNoSeccomp: () => {
        if (this.warnedNoSeccomp) return;
        this.warnedNoSeccomp = true;
        this.logger.warn({ arch: os.arch() }, 'no seccomp table for this architecture: sandboxes run without a seccomp filter (user namespaces disabled, no capabilities)');
      },
      dropPrivileges: () => (this.sandboxUser ? setprivArgs(this.setprivPath, this.sandboxUser) : []),
      makeSandboxDir: (dir) => makeSandboxDir(dir, this.sandboxUser),
      makeSandboxDirSync: (dir) => makeSandboxDirSync(dir, this.sandboxUser),
      securityAuditor: () => (this.auditor ??= new SecurityAuditor(this.instance, this.logger)),
      inputs: { bundleLowers: this.bundleLowers, owner: this.sandboxUser, mounts: this.mounts },
      nativeRunner: () => this.runner.get(),
    };
  }

  /** The host uid/gid sandboxed processes run as (the driver's own when it does not run as root). */
  get sandboxHostIds(): { uid: number; gid: number } {
    return this.sandboxUser ?? { uid: process.getuid?.() ?? -1, gid: process.getgid?.() ?? -1 };
  }

  async preflight(shape: EnvironmentShape): Promise<void> {
    await checkHost(
      {
        imageDir: this.imageDir,
        bwrapPath: this.bwrapPath,
        setprivPath: this.setprivPath,
        buildMissingImages: this.buildMissingImages,
        logger: this.logger,
        sandboxUser: this.sandboxUser,
        stateBase: this.stateBase,
        ensureStateRoot: () => this.ensureStateRoot(),
      },
      shape,
    );
    if (this.useCgroups) {
      const layout = await this.cgroupLayout().catch((err: Error) => {
        throw new Error(`cgroups unavailable: ${err.message}`);
      });
      await this.cpus.get().catch((err: Error) => {
        throw new Error(`cannot prepare the reservation of dedicated CPUs (${this.cpuLockDir}): ${err.message}`);
      });
      this.logger.info({ cgroups: describeLayout(layout), instance: this.instance }, 'container driver preflight ok');
    }
    await this.sweepOnce();
    await this.diskProbe.get();
    await this.runner.get(); // compiled now (once per host) rather than by the first run
  }

  async provision(id: string, shape: EnvironmentShape, signal?: AbortSignal): Promise<ContainerHandle> {
    if (!ENV_ID.test(id)) throw new Error(`invalid environment id '${id}'`);
    if (this.envs.has(id)) throw new Error(`environment ${id} already provisioned`);
    signal?.throwIfAborted();
    const image = await checkImage(this.imageDir, shape.image);
    if (!image.ok) throw new InfrastructureError(`${image.problem}; ${buildHint(this.imageDir, shape.image)}`);
    const stateDir = path.join(this.stateRoot, id);
    // With disk limits: work is the mount point of the environment's ext4 file, ctl a directory on
    // a small tmpfs at `run` (the sandbox writes nothing else on the host).
    const disk: WorkFs | null = this.diskLimits
      ? {
          image: path.join(stateDir, 'disk.img'),
          mountPoint: path.join(stateDir, 'work'),
          sizeMb: shape.diskMb ?? DEFAULT_DISK_MB,
          ctlMountPoint: path.join(stateDir, 'run'),
          ctlSizeMb: CTL_FS_MB,
        }
      : null;
    const state: EnvState = {
      handle: { id, shape, stateDir },
      disk,
      workDir: path.join(stateDir, 'work'),
      ctlDir: disk ? path.join(disk.ctlMountPoint, 'ctl') : path.join(stateDir, 'ctl'),
      runSeq: 0,
      active: null,
      inputs: null,
      strayGroups: false,
    };
    try {
      await this.ensureStateRoot();
      await removeDirAndMounts(stateDir);
      await fs.mkdir(stateDir, { mode: 0o711 });
      await fs.chmod(stateDir, 0o711); // whatever the umask: the sandbox user must traverse it
      signal?.throwIfAborted();
      if (disk) await createWorkFs(disk);
      await this.host.makeSandboxDir(state.workDir);
      if (this.useCgroups) await removeStaleGroups(await this.cgroupLayout(), this.cgroupParent, `${cgroupSafe(id)}-`, this.logger);
      signal?.throwIfAborted();
    } catch (err) {
      await bestEffort(this.logger, `removing the half-made environment ${id}`, () => removeDirAndMounts(stateDir));
      if (signal?.aborted) throw signal.reason ?? new Error('provisioning aborted');
      throw new InfrastructureError(`cannot provision environment ${id}: ${(err as Error).message}`, { cause: err });
    }
    this.envs.set(id, state);
    return state.handle;
  }

  /** Runs one test; the environment runs nothing else meanwhile (see run.ts). */
  async run(env: EnvironmentHandle, spec: RunSpec): Promise<RunOutcome> {
    const state = this.state(env);
    if (state.active) throw new Error(`environment ${env.id} is already running a test`);
    return runInSandbox(this.host, state, spec);
  }

  async reset(env: EnvironmentHandle): Promise<void> {
    const state = this.state(env);
    const phases = phaseTimer(this.host.phaseTimings, 'reset.total');
    await this.stopActive(state, 'reset');
    phases.lap('reset.stop');
    await resetEnvironment(this.host, state, phases, async () => {
      // Each run removes its own group; only one that could not be removed is looked for.
      if (this.useCgroups && state.strayGroups) {
        state.strayGroups = false;
        await removeStaleGroups(await this.cgroupLayout(), this.cgroupParent, `${cgroupSafe(env.id)}-`, this.logger);
      }
    });
  }

  async healthCheck(env: EnvironmentHandle): Promise<HealthStatus> {
    const state = this.envs.get(env.id);
    if (!state) return { ok: false, reason: `environment ${env.id} is not provisioned by this driver` };
    if (state.active) return { ok: true }; // busy running a test: the sandbox machinery works
    const health = await healthProbe(this.host, state.handle);
    if (!health.ok) this.logger.warn({ envId: env.id, reason: health.reason }, 'health check failed');
    return health;
  }

  async usage(env: EnvironmentHandle): Promise<ResourceUsage | null> {
    const active = this.envs.get(env.id)?.active;
    if (!active?.cgroup) return null;
    const group = active.cgroup;
    const stats = await bestEffort(this.logger, 'reading the usage of a run', () => group.stats(), null);
    if (!stats) return null;
    const now = performance.now();
    let cpuPercent: number | null = null;
    if (stats.cpuTimeMs !== null) {
      const prev = active.lastCpu ?? { cpuMs: 0, at: active.startedAt };
      const wall = now - prev.at;
      if (wall > 0) cpuPercent = Math.max(0, ((stats.cpuTimeMs - prev.cpuMs) / wall) * 100);
      active.lastCpu = { cpuMs: stats.cpuTimeMs, at: now };
    }
    return { cpuTimeMs: stats.cpuTimeMs, cpuPercent, memoryBytes: stats.memoryBytes, peakMemoryBytes: stats.peakMemoryBytes };
  }

  async destroy(env: EnvironmentHandle): Promise<void> {
    const state = this.envs.get(env.id);
    if (state) await this.stopActive(state, 'destroy');
    if (state) await bestEffort(this.logger, `unmounting the bundle of ${env.id}`, () => unmountInputs(this.host.inputs, state));
    this.envs.delete(env.id);
    // The handle is opaque: the directory is the driver's own, never a path the caller passed.
    if (!ENV_ID.test(env.id)) throw new Error(`refusing to remove environment '${env.id}': not an environment id`);
    const dir = path.join(this.stateRoot, env.id);
    try {
      if (this.useCgroups) await removeStaleGroups(await this.cgroupLayout(), this.cgroupParent, `${cgroupSafe(env.id)}-`, this.logger);
      await removeDirAndMounts(dir);
    } catch (err) {
      this.logger.error({ envId: env.id, err: (err as Error).message }, 'destroy failed: its files stay on the host');
      throw new InfrastructureError(`cannot destroy environment ${env.id}: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * Stops every run and removes this instance's cgroups and state dirs (what destroy() leaves: the
   * instance's own parent group and dir). The driver may be used again afterwards (it re-creates them).
   */
  async close(): Promise<void> {
    const errors: string[] = [];
    for (const state of this.envs.values()) {
      await this.stopActive(state, 'destroy');
      await unmountInputs(this.host.inputs, state).catch((err: Error) => errors.push(err.message));
    }
    this.envs.clear();
    await this.auditor?.close();
    const pending = this.layout.peek();
    const layout = pending ? await bestEffort(this.logger, 'detecting cgroups for close', () => pending, null) : null;
    this.layout.clear();
    this.cpus.clear();
    if (layout) await removeGroupTree(layout, this.cgroupParent, this.logger).catch((err: Error) => errors.push(err.message));
    this.stateRootReady.clear();
    this.seccompFiles.clear();
    this.bundleLowers.clear();
    this.mounts.close();
    this.diskProbe.clear();
    await removeDirAndMounts(this.stateRoot).catch((err: Error) => errors.push(err.message));
    if (errors.length) throw new Error(`container driver close: ${errors.join('; ')}`);
  }

  /** What dead driver instances left on this host (sweep.ts); called once by the first preflight. */
  async sweepDeadInstances(): Promise<{ cgroups: string[]; stateDirs: string[] }> {
    let layout: CgroupLayout | null = null;
    try {
      layout = this.useCgroups ? await this.cgroupLayout() : await detectCgroupLayout(this.cgroupRoot);
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, 'sweep: cgroups unavailable; only state dirs are swept');
    }
    return sweepDeadInstances({ layout, cgroupBase: this.cgroupBase, stateBase: this.stateBase, log: this.logger });
  }

  /** The sweep of dead instances, once per instance; never fails. */
  private sweepOnce(): Promise<void> {
    this.swept ??= this.sweepDeadInstances().then(
      () => undefined,
      (err: Error) => this.logger.warn({ err: err.message }, 'sweep of dead container drivers failed'),
    );
    return this.swept;
  }

  private state(env: EnvironmentHandle): EnvState {
    const state = this.envs.get(env.id);
    if (!state) throw new InfrastructureError(`environment ${env.id} is not provisioned by this driver`);
    return state;
  }

  private async stopActive(state: EnvState, reason: 'destroy' | 'reset'): Promise<void> {
    const active = state.active;
    if (!active) return;
    active.abort(reason);
    await active.done;
    // run() finishes its own bookkeeping (cgroup removal) right after; give it a moment.
    for (let i = 0; i < 100 && state.active; i++) await new Promise((r) => setTimeout(r, 20));
  }

  private ensureStateRoot(): Promise<void> {
    return this.stateRootReady.get();
  }

  private cgroupLayout(): Promise<CgroupLayout> {
    return this.layout.get();
  }
}
