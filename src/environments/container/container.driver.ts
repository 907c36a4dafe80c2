// The CONTAINER environment driver: each run is a bubblewrap sandbox on a read-only base image, with
// a per-environment writable work dir, its own namespaces (no network but loopback), uid 65534, no
// capabilities, and a per-run cgroup for limits, accounting and killing the whole tree.
//
// Host process tree of one run:
//   node ─ sh (join wrapper: writes $$ to the run's cgroup.procs files, then execs)
//          → [driver runs as root: setpriv, dropping to the sandbox host uid/gid, then execs] → bwrap
//          └ [new namespaces] bwrap init (pid 1) ─ sh runner.sh ─ perl (wait status) ─ the script
// The wrapper joins the cgroup before exec, so every descendant of bwrap starts inside the group:
// there is no window where the script could fork outside it.
//
// When the driver runs as root, bwrap runs as an unprivileged host user (sandboxUid/sandboxGid,
// default 65534 nobody/nogroup; see sandbox-user.ts): uid 65534 inside maps to that uid on the host,
// not to root. The work and control dirs are owned by it; their parents (the state root) are
// root-owned 0711 directories, and the image must be reachable by it (checked in preflight).
//
// Ownership and crash cleanup: each driver instance keeps its run groups under
// `<cgroupParent>/<instance>/` and its environments' state dirs under `<stateDir>/<instance>/`
// (instance.ts: the name encodes the owning process's pid, start time and pid namespace). Several
// processes share those parents; the first preflight of an instance sweeps the instances of dead
// processes (a SIGKILLed worker): it kills what is left in their groups, removes the groups and
// then their state dirs. A live process's instances are never touched. close() removes the
// instance's own groups and dirs.

import { spawn, type ChildProcess } from 'node:child_process';
import { constants as fsConstants, promises as fs, openSync, closeSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathExists } from '../../infra/fs-utils';
import {
  DEFAULT_DISK_MB,
  InfrastructureError,
  type EnvironmentDriver,
  type EnvironmentHandle,
  type EnvironmentShape,
  type ResourceUsage,
  type RunOutcome,
  type RunSpec,
} from '../driver.js';
import {
  DEFAULT_CGROUP_PARENT,
  DEFAULT_CGROUP_ROOT,
  RunCgroup,
  describeLayout,
  detectCgroupLayout,
  listChildGroups,
  prepareCgroupParent,
  removeGroupTree,
  removeIfEmptyAndOld,
  removeStaleGroups,
  type CgroupLayout,
} from '../cgroups.js';
import { collectArtifacts } from './artifacts.js';
import { CTL_FS_MB, clearInPlace, createWorkFs, destroyWorkFs, isNearlyFull, mountsBelow, removeTree, unmount, type WorkFs } from './work-fs.js';
import { SANDBOX_CTL_DIR, buildBwrapArgs, bwrapEnvData, isValidEnvName } from './bwrap-args.js';
import { buildHint, checkImage, ensureImage, type DriverLogger } from './image.js';
import { instanceStatus, newInstanceName } from './instance.js';
import { OutputCapture } from './output-capture.js';
import { inheritableFds } from '../../infra/inherited-fds';
import {
  SCRIPT_NAME,
  STARTED_FD,
  STATUS_FILE,
  buildDirectCommand,
  buildRunnerScript,
  parseRunnerStatus,
  serviceFiles,
  serviceLogName,
} from './runner-script.js';
import { buildSeccompFilter, type SeccompProfile } from './seccomp.js';
import {
  DEFAULT_SETPRIV_PATH,
  findUntraversable,
  prepareSecureDir,
  resolveSandboxUser,
  setprivArgs,
  type SandboxUser,
} from './sandbox-user.js';

export interface ContainerDriverOptions {
  /** Image cache: IMAGE_DIR/<shape.image>/rootfs. Required (parsed from config by the caller). */
  imageDir: string;
  /** pino-compatible logger; default: silent. */
  logger?: DriverLogger;
  /** bubblewrap binary; default `/usr/bin/bwrap` (Debian package `bubblewrap`). */
  bwrapPath?: string;
  /**
   * Where environments keep their work and control dirs (in a per-instance subdirectory
   * `<stateDir>/p<pid>.<start>.<pidns>.<random>/`); default `<os tmpdir>/test-orchestrator/container`.
   * When the driver runs as root the sandbox user must be able to traverse it (bwrap resolves the
   * bind sources as that user): missing components are created root-owned 0711, and preflight fails
   * clearly when an existing parent is not reachable (e.g. under /root, mode 0700).
   */
  stateDir?: string;
  /**
   * Host uid/gid bwrap runs as when the driver runs as root; default 65534/65534 (nobody/nogroup).
   * A uid no other host process uses is better still. Ignored when the driver does not run as root
   * (bwrap then runs as the current user).
   */
  sandboxUid?: number;
  sandboxGid?: number;
  /** util-linux `setpriv`, used to drop to sandboxUid/sandboxGid; default `/usr/bin/setpriv`. */
  setprivPath?: string;
  /** cgroup mount point; default `/sys/fs/cgroup`. */
  cgroupRoot?: string;
  /**
   * Parent group (relative to each hierarchy root) shared by all drivers on the host; each instance
   * keeps its run groups in its own child group of it. Default `test-orchestrator`.
   */
  cgroupParent?: string;
  /**
   * Run without cgroups (no memory/CPU/pids limits, no accounting, killing by PID namespace only).
   * Default false; only for benchmarks and hosts where the caller accepts the risk.
   */
  disableCgroups?: boolean;
  /** preflight builds a missing image (logging progress) instead of failing; default false. */
  buildMissingImages?: boolean;
}

interface ActiveRun {
  cgroup: RunCgroup | null;
  startedAt: number;
  lastCpu: { cpuMs: number; at: number } | null;
  abort: (reason: 'destroy' | 'reset') => void;
  done: Promise<unknown>;
}

interface EnvState {
  handle: EnvironmentHandle;
  /** The environment's own filesystem (work and ctl dirs live on it); null: plain dirs, no disk limit. */
  disk: WorkFs | null;
  workDir: string;
  ctlDir: string;
  runSeq: number;
  active: ActiveRun | null;
}

const SILENT: DriverLogger = { info() {}, warn() {}, error() {} };
/** A run group of an older version (no instance parent) still empty after this long is a leak. */
const LEGACY_GROUP_MIN_AGE_MS = 5 * 60_000;
const ENV_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/**
 * Where bwrap reads the test's environment (`--args ENV_FD`): the wrapper's stdin is a socket on which
 * the driver writes it; the wrapper moves it here and gives the sandbox /dev/null as stdin. bwrap
 * closes it once read: the sandbox never sees it.
 */
const ENV_FD = 5;

/**
 * sh program that closes the descriptors it was told of, moves its stdin (the environment) to
 * ENV_FD, joins the cgroup (its own pid, so bwrap and all it forks are inside), then execs.
 * Arguments: the count of descriptors to close, them, the count of cgroup.procs files, them, the
 * command.
 */
const JOIN_AND_EXEC = [
  // Descriptors this process inherited without O_CLOEXEC would reach the sandbox through bwrap.
  'n=$1; shift',
  'while [ "$n" -gt 0 ]; do eval "exec $1>&-"; shift; n=$((n - 1)); done',
  `exec ${ENV_FD}<&0 0</dev/null`,
  // Core dumps on (core_pattern `core` writes them to the crashing process's cwd); rlimits pass
  // through bwrap. The hard limit may be lower when the host lacks CAP_SYS_RESOURCE.
  'ulimit -c unlimited 2>/dev/null || ulimit -c "$(ulimit -H -c)" 2>/dev/null',
  'n=$1; shift',
  'while [ "$n" -gt 0 ]; do',
  '  echo $$ > "$1" || { echo "[orchestrator] cannot join cgroup ($1)" >&2; exit 125; }',
  '  shift; n=$((n - 1))',
  'done',
  'exec "$@"',
].join('\n');

const SIGNAL_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(os.constants.signals).map(([name, num]) => [num, name]),
);

function signalName(n: number): string {
  return SIGNAL_NAMES[n] ?? `SIG${n}`;
}


export class ContainerDriver implements EnvironmentDriver {
  readonly kind = 'CONTAINER' as const;

  private readonly imageDir: string;
  private readonly logger: DriverLogger;
  private readonly bwrapPath: string;
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
  private readonly setprivPath: string;
  private stateRootReady: Promise<void> | null = null;
  private readonly envs = new Map<string, EnvState>();
  private layout: Promise<CgroupLayout> | null = null;
  private readonly seccompFiles = new Map<SeccompProfile, Promise<string | null>>();
  private warnedNoSeccomp = false;
  /** Environments get a loop-mounted filesystem of diskMb (needs root; see work-fs.ts). */
  private readonly diskLimits: boolean;
  private diskProbe: Promise<void> | null = null;

  constructor(options: ContainerDriverOptions) {
    if (!options?.imageDir) throw new Error('ContainerDriver: imageDir is required');
    this.imageDir = path.resolve(options.imageDir);
    this.logger = options.logger ?? SILENT;
    this.bwrapPath = options.bwrapPath ?? '/usr/bin/bwrap';
    this.instance = newInstanceName();
    this.stateBase = path.resolve(options.stateDir ?? defaultStateRoot());
    this.stateRoot = path.join(this.stateBase, this.instance);
    this.cgroupRoot = options.cgroupRoot ?? DEFAULT_CGROUP_ROOT;
    this.cgroupBase = (options.cgroupParent ?? DEFAULT_CGROUP_PARENT).split('/').filter(Boolean).join('/');
    if (!this.cgroupBase) throw new Error('ContainerDriver: cgroupParent must name a group below the cgroup root');
    this.cgroupParent = `${this.cgroupBase}/${this.instance}`;
    this.useCgroups = !options.disableCgroups;
    this.buildMissingImages = options.buildMissingImages ?? false;
    this.sandboxUser = resolveSandboxUser(options);
    this.setprivPath = options.setprivPath ?? DEFAULT_SETPRIV_PATH;
    this.diskLimits = process.getuid?.() === 0;
  }

  /** The host uid/gid sandboxed processes run as (the driver's own when it does not run as root). */
  get sandboxHostIds(): { uid: number; gid: number } {
    return this.sandboxUser ?? { uid: process.getuid?.() ?? -1, gid: process.getgid?.() ?? -1 };
  }

  // ---------------------------------------------------------------------------------------------
  // preflight / provision

  async preflight(shape: EnvironmentShape): Promise<void> {
    if (shape.kind !== 'CONTAINER') throw new Error(`ContainerDriver cannot run ${shape.kind} environments`);
    const archNames: Record<string, string[]> = { x64: ['x86_64', 'amd64', 'x64'], arm64: ['aarch64', 'arm64'] };
    const hostNames = archNames[os.arch()] ?? [os.arch()];
    if (shape.arch && !hostNames.includes(shape.arch)) {
      throw new Error(`pool '${shape.pool}' wants arch ${shape.arch} but this host is ${hostNames[0]}; use the QEMU driver`);
    }
    try {
      await fs.access(this.bwrapPath, fsConstants.X_OK);
    } catch {
      throw new Error(
        `bubblewrap not found at ${this.bwrapPath}: install the Debian package \`bubblewrap\` (apt-get install -y bubblewrap) or set bwrapPath`,
      );
    }
    const image = await checkImage(this.imageDir, shape.image);
    if (!image.ok) {
      if (!this.buildMissingImages) throw new Error(`${image.problem}; ${buildHint(this.imageDir, shape.image)}`);
      await ensureImage(this.imageDir, shape.image, this.logger);
    }
    if (this.sandboxUser) {
      const user = this.sandboxUser;
      try {
        await fs.access(this.setprivPath, fsConstants.X_OK);
      } catch {
        throw new Error(
          `setpriv not found at ${this.setprivPath}: a root driver needs it to start sandboxes as uid ${user.uid}; install the Debian package \`util-linux\` or set setprivPath`,
        );
      }
      // Check before creating anything: the state root, or its nearest existing parent.
      const rootfs = image.paths.rootfs;
      const bad = await findUntraversable(this.setprivPath, user, [rootfs, await nearestExisting(this.stateBase)]);
      if (bad) {
        const why = bad.blocker ? ` (${bad.blocker} denies search permission to uid ${user.uid} gid ${user.gid})` : '';
        if (bad.dir === rootfs) {
          throw new Error(
            `image rootfs ${rootfs} is not reachable by the sandbox user uid ${user.uid}${why}: bwrap runs as that user when the ` +
              'orchestrator runs as root. Keep images in a world-traversable directory (IMAGE_DIR=/var/cache/test-orchestrator/images, ' +
              'the default for root; `bash scripts/build-image.sh` builds there) or make every parent directory mode 0711 or wider',
          );
        }
        throw new Error(
          `container state dir ${this.stateBase} is not reachable by the sandbox user uid ${user.uid}${why}: leave stateDir unset ` +
            `(default ${defaultStateRoot()}) or point it at a directory whose parents are mode 0711 or wider`,
        );
      }
      await this.ensureStateRoot().catch((err: Error) => {
        throw new Error(`container state dir ${this.stateBase} is unusable: ${err.message}; leave stateDir unset (default ${defaultStateRoot()})`);
      });
    }
    if (this.useCgroups) {
      const layout = await this.cgroupLayout().catch((err: Error) => {
        throw new Error(`cgroups unavailable: ${err.message}`);
      });
      this.logger.info({ cgroups: describeLayout(layout), instance: this.instance }, 'container driver preflight ok');
    }
    await this.sweepOnce();
    await this.probeDiskLimits();
  }

  /** Once per instance: a small filesystem made, mounted and thrown away, or a clear error. */
  private probeDiskLimits(): Promise<void> {
    if (!this.diskLimits) {
      this.diskProbe ??= Promise.resolve().then(() =>
        this.logger.warn({ instance: this.instance }, 'container driver not running as root: the disk of environments is not limited (diskMb ignored)'),
      );
      return this.diskProbe;
    }
    this.diskProbe ??= (async () => {
      await this.ensureStateRoot();
      const dir = path.join(this.stateRoot, 'disk-probe');
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
      const probe: WorkFs = { image: path.join(dir, 'disk.img'), mountPoint: path.join(dir, 'work'), sizeMb: 16, ctlMountPoint: path.join(dir, 'run'), ctlSizeMb: 1 };
      try {
        await createWorkFs(probe);
      } finally {
        await removeDirAndMounts(dir).catch((err: Error) => this.logger.error({ err: err.message }, 'disk probe: cannot remove its filesystems'));
      }
    })().catch((err: Error) => {
      this.diskProbe = null;
      throw new Error(`cannot limit the disk of environments (a loop-mounted ext4 file per environment): ${err.message}`);
    });
    return this.diskProbe;
  }

  async provision(id: string, shape: EnvironmentShape): Promise<EnvironmentHandle> {
    if (!ENV_ID.test(id)) throw new Error(`invalid environment id '${id}'`);
    if (this.envs.has(id)) throw new Error(`environment ${id} already provisioned`);
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
    };
    try {
      await this.ensureStateRoot();
      await removeDirAndMounts(stateDir);
      await fs.mkdir(stateDir, { mode: 0o711 });
      await fs.chmod(stateDir, 0o711); // whatever the umask: the sandbox user must traverse it
      if (disk) await createWorkFs(disk);
      await this.makeSandboxDir(state.workDir);
      if (this.useCgroups) {
        const layout = await this.cgroupLayout();
        await removeStaleGroups(layout, this.cgroupParent, `${cgroupSafe(id)}-`);
      }
    } catch (err) {
      throw new InfrastructureError(`cannot provision environment ${id}: ${(err as Error).message}`, { cause: err });
    }
    this.envs.set(id, state);
    return state.handle;
  }

  // ---------------------------------------------------------------------------------------------
  // run

  async run(env: EnvironmentHandle, spec: RunSpec): Promise<RunOutcome> {
    const state = this.state(env);
    if (state.active) throw new Error(`environment ${env.id} is already running a test`);
    const log = this.logger;
    const started = performance.now();
    if (spec.signal?.aborted) return emptyOutcome({ aborted: true });

    const image = await checkImage(this.imageDir, env.shape.image);
    if (!image.ok) throw new InfrastructureError(`${image.problem}; ${buildHint(this.imageDir, env.shape.image)}`);

    // Control dir: runner, status, service logs. Fresh per run.
    const shebang = spec.script.startsWith('#!');
    // Without services and with perl in the image, perl is the sandbox's command (no runner shell).
    const direct = spec.services.length === 0 && (await pathExists(path.join(image.paths.rootfs, 'usr/bin/perl')));
    try {
      await fs.rm(state.ctlDir, { recursive: true, force: true });
      await this.makeSandboxDir(state.ctlDir);
      await this.makeSandboxDir(state.workDir);
      const scriptPath = path.join(state.workDir, SCRIPT_NAME);
      await fs.rm(scriptPath, { force: true }); // never write through a link left by the last run
      await writeNewFile(scriptPath, spec.script, shebang ? 0o755 : 0o644);
      const margin = Math.min(2000, Math.max(100, spec.timeoutMs * 0.1));
      if (!direct) {
        await writeNewFile(
          path.join(state.ctlDir, 'runner.sh'),
          buildRunnerScript({ services: spec.services, shebang, readyBudgetMs: Math.max(0, Math.round(spec.timeoutMs - margin)) }),
          0o644,
        );
        for (const f of serviceFiles(spec.services)) await writeNewFile(path.join(state.ctlDir, f.name), f.text, 0o644);
      }
    } catch (err) {
      throw new InfrastructureError(`cannot prepare the work dir of ${env.id}: ${(err as Error).message}`, { cause: err });
    }
    for (const k of Object.keys(spec.env)) {
      if (!isValidEnvName(k)) log.warn({ envId: env.id, testId: spec.testId, name: k }, 'invalid environment variable name dropped');
    }

    // Every run gets a seccomp filter: the baseline, or the strict one for security tests.
    let seccompFd: number | undefined;
    const file = await this.seccompFilterFile(spec.hardened ? 'strict' : 'baseline');
    if (file) seccompFd = openSync(file, 'r');
    else if (!this.warnedNoSeccomp) {
      this.warnedNoSeccomp = true;
      log.warn({ arch: os.arch() }, 'no seccomp table for this architecture: sandboxes run without a seccomp filter (user namespaces disabled, no capabilities)');
    }

    // Per-run cgroup.
    let cgroup: RunCgroup | null = null;
    if (this.useCgroups) {
      state.runSeq += 1;
      const name = `${cgroupSafe(env.id)}-${spec.attempt}-${state.runSeq}`;
      try {
        const layout = await this.cgroupLayout();
        cgroup = await RunCgroup.create(layout, this.cgroupParent, name, {
          memoryBytes: env.shape.memoryMb * 1024 * 1024,
          cpus: env.shape.cpus,
          pids: env.shape.pids,
          cpuset: spec.dedicatedCpus && spec.dedicatedCpus.length > 0 ? spec.dedicatedCpus : undefined,
        });
      } catch (err) {
        if (seccompFd !== undefined) closeSync(seccompFd);
        throw new InfrastructureError(`cannot create the cgroup of ${env.id}: ${(err as Error).message}`, { cause: err });
      }
    }

    const bwrapArgs = buildBwrapArgs({
      rootfs: image.paths.rootfs,
      workDir: state.workDir,
      ctlDir: state.ctlDir,
      env: spec.env,
      envFd: ENV_FD,
      command: direct ? buildDirectCommand(shebang) : ['/bin/sh', `${SANDBOX_CTL_DIR}/runner.sh`],
      disableUserns: true,
      seccompFd: seccompFd === undefined ? undefined : 3,
      tmpSizeBytes: env.shape.memoryMb * 1024 * 1024,
    });
    const procsFiles = cgroup?.procsFiles ?? [];
    // The child gets 0 (the environment, moved to ENV_FD by the wrapper), 1-2, the seccomp program
    // (3) and the start socket (STARTED_FD); whatever else this process would pass on (descriptors it
    // inherited without O_CLOEXEC) the wrapper closes.
    const stdio: ('ignore' | 'pipe' | number)[] = ['pipe', 'pipe', 'pipe', seccompFd ?? 'ignore', 'pipe'];
    if (stdio.length !== STARTED_FD + 1) throw new Error('container driver: STARTED_FD must be the last stdio slot');
    if (ENV_FD < stdio.length) throw new Error('container driver: ENV_FD must be above the stdio slots');
    const toClose = inheritableFds().filter((fd) => fd >= stdio.length || stdio[fd] === 'ignore');
    // dash redirects only single-digit descriptors: bash (Essential in Debian) closes the others.
    const command = toClose.some((fd) => fd > 9) ? '/bin/bash' : '/bin/sh';
    const args = [
      // bash sources ~/.bashrc when its stdin is a socket (as under rshd), which the environment's is
      ...(command === '/bin/bash' ? ['--norc', '--noprofile'] : []),
      '-c', JOIN_AND_EXEC, 'join',
      String(toClose.length), ...toClose.map(String),
      String(procsFiles.length), ...procsFiles,
      ...this.dropPrivileges(), this.bwrapPath, ...bwrapArgs,
    ];

    const stdout = new OutputCapture(spec.maxOutputBytes);
    const stderr = new OutputCapture(spec.maxOutputBytes);
    let timedOut = false;
    let aborted = false;
    let child: ChildProcess;
    const t0 = performance.now();
    try {
      child = spawn(command, args, { stdio, env: {}, cwd: '/' });
    } catch (err) {
      await cgroup?.remove().catch(() => undefined);
      throw new InfrastructureError(`cannot start the sandbox: ${(err as Error).message}`, { cause: err });
    } finally {
      if (seccompFd !== undefined) closeSync(seccompFd);
    }

    const killTree = () => {
      if (cgroup) void cgroup.kill().catch((err: Error) => log.warn({ envId: env.id, err: err.message }, 'cgroup kill failed'));
      child.kill('SIGKILL');
    };
    const onData = (stream: 'stdout' | 'stderr', capture: OutputCapture) => (chunk: Buffer) => {
      const kept = capture.push(chunk);
      if (kept.length > 0 && spec.onOutput) {
        try {
          spec.onOutput(stream, kept);
        } catch (err) {
          log.warn({ testId: spec.testId, err: (err as Error).message }, 'onOutput callback threw');
        }
      }
    };
    // The environment: bwrap reads it to EOF before it does anything else. A wrapper or bwrap that
    // ends first (it then fails to start) makes this write fail: that is reported below, not here.
    child.stdin!.on('error', (err: Error) => log.info({ envId: env.id, err: err.message }, 'sandbox environment not read'));
    child.stdin!.end(bwrapEnvData(spec.env));
    child.stdout!.on('data', onData('stdout', stdout));
    child.stderr!.on('data', onData('stderr', stderr));
    // Any byte on the start socket: the sandbox was set up and the runner ran.
    let sandboxStarted = false;
    const startSocket = child.stdio[STARTED_FD] as NodeJS.ReadableStream & { destroy(): void };
    startSocket.on('data', () => {
      sandboxStarted = true;
    });
    startSocket.on('error', (err: Error) => log.warn({ envId: env.id, err: err.message }, 'start socket error'));
    const streamsClosed = Promise.all([
      new Promise<void>((r) => child.stdout!.once('close', () => r())),
      new Promise<void>((r) => child.stderr!.once('close', () => r())),
      new Promise<void>((r) => startSocket.once('close', () => r())),
    ]);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal }));
      child.once('error', (error) => resolve({ code: null, signal: null, error }));
    });

    const timer = setTimeout(() => {
      timedOut = true;
      killTree();
    }, Math.max(1, spec.timeoutMs));
    const onAbort = () => {
      if (!timedOut) aborted = true;
      killTree();
    };
    spec.signal?.addEventListener('abort', onAbort, { once: true });
    const active: ActiveRun = {
      cgroup,
      startedAt: t0,
      lastCpu: null,
      abort: () => {
        aborted = true;
        killTree();
      },
      done: exited,
    };
    state.active = active;

    try {
      const exit = await exited;
      const durationMs = Math.round(performance.now() - t0);
      clearTimeout(timer);
      spec.signal?.removeEventListener('abort', onAbort);
      // The PID namespace died with bwrap; anything still in the group (a wrapper that never
      // exec'd, a process between namespaces) is killed too.
      if (cgroup) await cgroup.kill(3000);
      await Promise.race([streamsClosed, new Promise((r) => setTimeout(r, 2000).unref())]);
      child.stdout!.destroy();
      child.stderr!.destroy();
      startSocket.destroy();

      const stats = cgroup ? await cgroup.stats() : null;
      // The control dir belongs to the sandbox user: never follow a link or block on a FIFO there.
      const statusText = await readSmallRegularFile(path.join(state.ctlDir, STATUS_FILE));
      const status = statusText === null ? null : parseRunnerStatus(statusText);

      if (exit.error) {
        throw new InfrastructureError(`cannot start the sandbox (${command}): ${exit.error.message}`, { cause: exit.error });
      }
      if (!sandboxStarted && !timedOut && !aborted) {
        throw new InfrastructureError(
          `sandbox failed to start (exit ${exit.code ?? exit.signal}): ${stderr.text.trim().slice(-2000) || 'no output'}`,
        );
      }

      let exitCode: number | null = null;
      let signal: string | null = null;
      if (status && !timedOut && !aborted) {
        if (status.kind === 'exit') exitCode = status.code;
        else if (status.kind === 'signal') signal = signalName(status.signal);
        else if (status.code > 128 && SIGNAL_NAMES[status.code - 128]) signal = signalName(status.code - 128);
        else exitCode = status.code;
      } else if (timedOut || aborted) {
        signal = 'SIGKILL';
      } else if (exit.signal) {
        signal = exit.signal;
      } else if (exit.code !== null && exit.code > 128 && SIGNAL_NAMES[exit.code - 128]) {
        // No status file (the runner itself was killed, e.g. by the OOM killer): bwrap reports 128+N.
        signal = signalName(exit.code - 128);
      } else {
        exitCode = exit.code;
      }

      // Before collecting (which writes nothing there): did the test fill its disk?
      const diskFull = state.disk
        ? await isNearlyFull(state.disk.mountPoint).catch((err: Error) => {
            log.warn({ envId: env.id, err: err.message }, 'cannot read how full the disk is');
            return false;
          })
        : false;
      let files: RunOutcome['files'] = [];
      let artifactNotes: string[] = [];
      try {
        ({ files, notes: artifactNotes } = await collectArtifacts({
          workDir: state.workDir,
          artifactDir: spec.artifactDir,
          patterns: spec.artifactPaths,
          exclude: [SCRIPT_NAME],
          logs: spec.services.map((svc, i) => ({
            source: path.join(state.ctlDir, serviceLogName(i)),
            name: `services/${svc.name.replace(/[^A-Za-z0-9._-]/g, '_') || `service-${i}`}.log`,
          })),
          limits: spec.artifactLimits,
          onRejected: (pattern, reason) => log.warn({ testId: spec.testId, pattern, reason }, 'artifact pattern rejected'),
        }));
        if (artifactNotes.length) log.warn({ testId: spec.testId, notes: artifactNotes }, 'artifacts left out or cut');
      } catch (err) {
        log.error({ testId: spec.testId, err: (err as Error).message }, 'artifact collection failed');
        throw new InfrastructureError(`cannot collect artifacts: ${(err as Error).message}`, { cause: err });
      }

      const outcome: RunOutcome = {
        exitCode,
        signal,
        timedOut,
        aborted,
        oomKilled: (stats?.oomKills ?? 0) > 0,
        pidsLimitHit: (stats?.pidsLimitHits ?? 0) > 0,
        stdout: stdout.text,
        stderr: stderr.text,
        stdoutBytes: stdout.bytes,
        stderrBytes: stderr.bytes,
        outputTruncated: stdout.truncated || stderr.truncated,
        durationMs,
        cpuTimeMs: stats?.cpuTimeMs ?? null,
        peakMemoryBytes: stats?.peakMemoryBytes ?? null,
        files,
        diskFull,
        artifactNotes,
      };
      log.info(
        {
          envId: env.id,
          testId: spec.testId,
          attempt: spec.attempt,
          exitCode,
          signal,
          timedOut,
          aborted,
          oomKilled: outcome.oomKilled,
          durationMs,
          setupMs: Math.round(t0 - started),
        },
        'container run finished',
      );
      return outcome;
    } finally {
      clearTimeout(timer);
      spec.signal?.removeEventListener('abort', onAbort);
      state.active = null;
      if (cgroup) {
        await cgroup.remove().catch((err: Error) => log.warn({ envId: env.id, err: err.message }, 'cgroup removal failed'));
      }
    }
  }

  // ---------------------------------------------------------------------------------------------
  // reset / health / usage / destroy

  async reset(env: EnvironmentHandle): Promise<void> {
    const state = this.state(env);
    await this.stopActive(state, 'reset');
    try {
      if (this.useCgroups) await removeStaleGroups(await this.cgroupLayout(), this.cgroupParent, `${cgroupSafe(env.id)}-`);
      if (state.disk) {
        // After a big test a fresh filesystem: quicker than deleting what it left, whatever its
        // size or depth. After a small one the few files go in place.
        const cleared = await clearInPlace(state.disk, state.ctlDir, (what, err) =>
          this.logger.info({ envId: env.id, err: err.message }, what),
        );
        if (!cleared) {
          await destroyWorkFs(state.disk);
          await createWorkFs(state.disk);
        }
      } else {
        await removeTree(state.workDir);
        await removeTree(state.ctlDir);
      }
      await this.makeSandboxDir(state.workDir);
    } catch (err) {
      this.logger.error({ envId: env.id, err: (err as Error).message }, 'reset failed: the environment is unusable');
      throw new InfrastructureError(`cannot reset environment ${env.id}: ${(err as Error).message}`, { cause: err });
    }
  }

  async healthCheck(env: EnvironmentHandle): Promise<boolean> {
    const state = this.envs.get(env.id);
    if (!state) return false;
    if (state.active) return true; // busy running a test: the sandbox machinery works
    const image = await checkImage(this.imageDir, env.shape.image);
    if (!image.ok) {
      this.logger.warn({ envId: env.id, problem: image.problem }, 'health check failed');
      return false;
    }
    const probeDir = path.join(env.stateDir, 'health');
    try {
      await fs.rm(probeDir, { recursive: true, force: true });
      await this.makeSandboxDir(probeDir);
      const args = buildBwrapArgs({
        rootfs: image.paths.rootfs,
        workDir: probeDir,
        ctlDir: probeDir,
        env: {},
        command: ['/bin/true'],
      });
      const ok = await new Promise<boolean>((resolve) => {
        const [cmd, ...rest] = [...this.dropPrivileges(), this.bwrapPath, ...args];
        const child = spawn(cmd, rest, { stdio: 'ignore', env: {}, cwd: '/', timeout: 10_000, killSignal: 'SIGKILL' });
        child.once('error', () => resolve(false));
        child.once('exit', (code) => resolve(code === 0));
      });
      if (!ok) this.logger.warn({ envId: env.id }, 'health check: sandbox did not run /bin/true');
      return ok;
    } finally {
      await fs.rm(probeDir, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  async usage(env: EnvironmentHandle): Promise<ResourceUsage | null> {
    const active = this.envs.get(env.id)?.active;
    if (!active?.cgroup) return null;
    const stats = await active.cgroup.stats().catch(() => null);
    if (!stats) return null;
    const now = performance.now();
    let cpuPercent: number | null = null;
    if (stats.cpuTimeMs !== null) {
      const prev = active.lastCpu ?? { cpuMs: 0, at: active.startedAt };
      const wall = now - prev.at;
      if (wall > 0) cpuPercent = Math.max(0, ((stats.cpuTimeMs - prev.cpuMs) / wall) * 100);
      active.lastCpu = { cpuMs: stats.cpuTimeMs, at: now };
    }
    return {
      cpuTimeMs: stats.cpuTimeMs,
      cpuPercent,
      memoryBytes: stats.memoryBytes,
      peakMemoryBytes: stats.peakMemoryBytes,
    };
  }

  async destroy(env: EnvironmentHandle): Promise<void> {
    const state = this.envs.get(env.id);
    if (state) await this.stopActive(state, 'destroy');
    this.envs.delete(env.id);
    const dir = path.resolve(env.stateDir);
    if (!dir.startsWith(this.stateRoot + path.sep) || path.dirname(dir) !== this.stateRoot) {
      throw new Error(`refusing to remove ${dir}: not under the driver's state dir ${this.stateRoot}`);
    }
    try {
      if (this.useCgroups) await removeStaleGroups(await this.cgroupLayout(), this.cgroupParent, `${cgroupSafe(env.id)}-`);
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
    for (const state of this.envs.values()) await this.stopActive(state, 'destroy');
    this.envs.clear();
    const layout = this.layout ? await this.layout.catch(() => null) : null;
    this.layout = null;
    if (layout) await removeGroupTree(layout, this.cgroupParent).catch((err: Error) => errors.push(err.message));
    this.stateRootReady = null;
    this.seccompFiles.clear();
    this.diskProbe = null;
    await removeDirAndMounts(this.stateRoot).catch((err: Error) => errors.push(err.message));
    if (errors.length) throw new Error(`container driver close: ${errors.join('; ')}`);
  }

  /**
   * Removes what driver instances of dead processes left on this host (after a SIGKILL or a crash):
   * kills anything still in their cgroups, removes the groups (children first), then their state
   * dirs. Instances of live processes, or of another pid namespace, are never touched; nor is a
   * state dir whose groups could not be removed. Run group directories of older versions (directly
   * under the shared parent) are removed when empty and more than 5 minutes old. Errors are logged,
   * never thrown. Called once per instance by the first preflight.
   */
  async sweepDeadInstances(): Promise<{ cgroups: string[]; stateDirs: string[] }> {
    const log = this.logger;
    const removed = { cgroups: [] as string[], stateDirs: [] as string[] };
    const keep = new Set<string>(); // dead instances whose groups are still there: keep their dirs
    let layout: CgroupLayout | null = null;
    try {
      layout = this.useCgroups ? await this.cgroupLayout() : await detectCgroupLayout(this.cgroupRoot);
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'sweep: cgroups unavailable; only state dirs are swept');
    }
    if (layout) {
      for (const name of await listChildGroups(layout, this.cgroupBase)) {
        const rel = `${this.cgroupBase}/${name}`;
        const status = instanceStatus(name);
        try {
          if (status === 'dead') {
            await removeGroupTree(layout, rel);
            removed.cgroups.push(rel);
          } else if (status === 'not-instance' && (await removeIfEmptyAndOld(layout, rel, LEGACY_GROUP_MIN_AGE_MS))) {
            removed.cgroups.push(rel);
          }
        } catch (err) {
          keep.add(name);
          log.warn({ group: rel, err: (err as Error).message }, 'sweep: cannot remove the cgroups of a dead driver');
        }
      }
    }
    let entries: string[] = [];
    try {
      entries = await fs.readdir(this.stateBase);
    } catch {
      // no state dir yet: nothing to sweep
    }
    const uid = process.getuid?.();
    for (const name of entries) {
      if (keep.has(name) || instanceStatus(name) !== 'dead') continue;
      const dir = path.join(this.stateBase, name);
      try {
        const st = await fs.lstat(dir);
        // Never follow a link; and only what this user created (a root driver's dirs are root's).
        if (!st.isDirectory() || (uid !== undefined && st.uid !== uid)) continue;
        // Their filesystems are unmounted first; rm never follows symbolic links nor crosses
        // into another mount. The sandbox-owned parts (work, ctl) are below root-owned 0711 dirs
        // with unguessable names, and their processes were killed above.
        await removeDirAndMounts(dir);
        removed.stateDirs.push(dir);
      } catch (err) {
        log.error({ dir, err: (err as Error).message }, 'sweep: cannot remove the state dir of a dead driver');
      }
    }
    if (removed.cgroups.length || removed.stateDirs.length) {
      log.info({ cgroups: removed.cgroups, stateDirs: removed.stateDirs }, 'removed what dead container drivers left behind');
    }
    return removed;
  }

  // ---------------------------------------------------------------------------------------------

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

  /** argv prefix that drops to the sandbox user before bwrap (empty when not running as root). */
  private dropPrivileges(): string[] {
    return this.sandboxUser ? setprivArgs(this.setprivPath, this.sandboxUser) : [];
  }

  /** Creates the state root once: root-owned 0711 components when dropping privileges. */
  private ensureStateRoot(): Promise<void> {
    if (!this.stateRootReady) {
      this.stateRootReady = this.sandboxUser
        ? prepareSecureDir(this.stateRoot)
        : fs.mkdir(this.stateRoot, { recursive: true }).then(() => undefined);
      this.stateRootReady.catch(() => {
        this.stateRootReady = null; // retry next time
      });
    }
    return this.stateRootReady;
  }

  /**
   * Creates a bind-source dir (work, control): the sandbox user's own, mode 0700, so no other local
   * user reads or writes a test's files (its parent is root's: the sandbox cannot swap it for a link).
   */
  private async makeSandboxDir(dir: string): Promise<void> {
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    // lchown: never change the owner of a link's target.
    if (this.sandboxUser) await fs.lchown(dir, this.sandboxUser.uid, this.sandboxUser.gid);
    await fs.chmod(dir, 0o700);
  }

  private async stopActive(state: EnvState, reason: 'destroy' | 'reset'): Promise<void> {
    const active = state.active;
    if (!active) return;
    active.abort(reason);
    await active.done;
    // run() finishes its own bookkeeping (cgroup removal) right after; give it a moment.
    for (let i = 0; i < 100 && state.active; i++) await new Promise((r) => setTimeout(r, 20));
  }

  private cgroupLayout(): Promise<CgroupLayout> {
    if (!this.layout) {
      this.layout = (async () => {
        const layout = await detectCgroupLayout(this.cgroupRoot);
        if (!layout) {
          throw new Error(
            `no usable cgroup hierarchy under ${this.cgroupRoot} (need cgroup v2 with memory+pids, or v1 memory, pids, cpu, cpuacct)`,
          );
        }
        await prepareCgroupParent(layout, this.cgroupParent);
        return layout;
      })();
      this.layout.catch(() => {
        this.layout = null; // retry next time
      });
    }
    return this.layout;
  }

  /** The BPF program of `profile`, written once into the (root-owned) state root; null: no table for this arch. */
  private seccompFilterFile(profile: SeccompProfile): Promise<string | null> {
    let file = this.seccompFiles.get(profile);
    if (!file) {
      file = (async () => {
        const filter = buildSeccompFilter(profile);
        if (!filter) return null;
        const target = path.join(this.stateRoot, `seccomp-${profile}-${os.arch()}.bpf`);
        await this.ensureStateRoot();
        await fs.writeFile(target, filter, { mode: 0o600 });
        return target;
      })();
      file.catch(() => this.seccompFiles.delete(profile)); // retry next time
      this.seccompFiles.set(profile, file);
    }
    return file;
  }
}

async function nearestExisting(dir: string): Promise<string> {
  let current = path.resolve(dir);
  while (!(await pathExists(current)) && path.dirname(current) !== current) current = path.dirname(current);
  return current;
}

/** Unmounts every filesystem at or below `dir` (deepest first), then removes the tree. */
async function removeDirAndMounts(dir: string): Promise<void> {
  for (const mp of await mountsBelow(dir)) await unmount(mp);
  await removeTree(dir);
}

function defaultStateRoot(): string {
  return path.join(os.tmpdir(), 'test-orchestrator', 'container');
}

/** Creates `file` (never through a link, never over an existing file) with `mode` whatever the umask. */
async function writeNewFile(file: string, data: string, mode: number): Promise<void> {
  const handle = await fs.open(file, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, mode);
  try {
    await handle.writeFile(data);
    await handle.chmod(mode);
  } finally {
    await handle.close();
  }
}

/** Reads a small regular file without following a final symlink or blocking on a FIFO; null if not one. */
async function readSmallRegularFile(file: string, maxBytes = 4096): Promise<string | null> {
  let handle: FileHandle | undefined;
  try {
    handle = await fs.open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
    if (!(await handle.stat()).isFile()) return null;
    const buf = Buffer.alloc(maxBytes);
    const { bytesRead } = await handle.read(buf, 0, maxBytes, 0);
    return buf.subarray(0, bytesRead).toString('utf8');
  } catch {
    return null;
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

function cgroupSafe(id: string): string {
  return id.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 100);
}

function emptyOutcome(over: Partial<RunOutcome>): RunOutcome {
  return {
    exitCode: null,
    signal: null,
    timedOut: false,
    aborted: false,
    oomKilled: false,
    stdout: '',
    stderr: '',
    stdoutBytes: Buffer.alloc(0),
    stderrBytes: Buffer.alloc(0),
    outputTruncated: false,
    durationMs: 0,
    cpuTimeMs: null,
    peakMemoryBytes: null,
    files: [],
    ...over,
  };
}
