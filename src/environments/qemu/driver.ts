// The QEMU environment driver: each environment is a booted VM; a test runs in it through the guest
// agent (run.ts, guest-agent.ts). By default the reset gives the next test a VM no test ran in: the
// environment's spare VM, booted in the background meanwhile (spare.ts), is swapped in (milliseconds),
// and the next spare starts booting (at a tenth of the CPU share, once the next test has started); with
// no spare ready the reset boots one (seconds under TCG). Every booted VM first runs `true` for the
// driver, so that no test pays for a fresh guest's first run (its programs read and translated). With
// QEMU_WARM_RESET the reset keeps the VM and throws the test's root overlay and work dir away (for
// tests that trust each other: a test is root in its VM). The VM files of an image version are built
// by `npm run images` (src/images/vm-image.ts), or here at provision when missing.
//
// Host side: each QEMU (vm.ts) as the unprivileged sandbox user when the driver is root, in a cgroup
// of its own (`<cgroupParent>/<instance>/<id>-vm-<n>`), its state (job dir shared over 9p, console log)
// in `<stateDir>/<instance>/<id>/vm-<n>/`.

import { constants as fsConstants, existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import path from 'node:path';
import { writeNewFile } from '../container/host-files';
import { qemuDriverConfigSchema, type QemuDriverConfigInput } from '../../config/qemu-driver';
import { bestEffort, bestEffortSync } from '../../infra/best-effort';
import { untilAborted } from '../../infra/abort';
import { Memo } from '../../infra/memo';
import { resolveImage } from '../../images/store';
import { ensureVmImage, readVmImage, type VmImage } from '../../images/vm-image';
import { detectCgroupLayout, prepareCgroupParent, type CgroupLayout } from '../cgroups/layout';
import { RunCgroup } from '../cgroups/run-cgroup';
import { removeGroupTree } from '../cgroups/sweep';
import {
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
import type { DriverLogger } from '../container/image';
import { newInstanceName } from '../container/instance';
import { sweepDeadInstances } from '../container/sweep';
import { prepareSecureDir, resolveSandboxUser, type SandboxUser } from '../container/sandbox-user';
import { runInVm, type VmState } from './run';
import { SpareVm, type BootedVm } from './spare';
import { QEMU_OVERHEAD_MB, Vm, kvmGroup, probeKvm, qemuPrivileges } from './vm';

export type QemuDriverOptions = QemuDriverConfigInput & { logger?: DriverLogger };

/** The QEMU driver's handle: the common one and the host dir of the VM's state. */
export interface QemuHandle extends EnvironmentHandle {
  readonly stateDir: string;
}

/** An environment: its current VM (the VmState fields and `current`) and its spare. */
interface QemuEnv extends VmState {
  handle: QemuHandle;
  current: BootedVm;
  spare: SpareVm | null;
  /** Aborted by destroy: a reset still going on gives up its boot, or stops what it booted. */
  closing: AbortController;
}

const ENV_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const SILENT: DriverLogger = { info: () => undefined, warn: () => undefined, error: () => undefined };
const RESET_MS = 15_000;
/** How long after a swap the next spare starts booting when no test has started meanwhile. */
const SPARE_DELAY_MS = 2_000;
/** KVM probes of this process, by QEMU, kernel and user: the answer does not change while it runs. */
const KVM_PROBES = new Map<string, Promise<{ ok: boolean; why: string }>>();
const HEALTH_MS = 10_000;

export function qemuCapabilities(): DriverCapabilities {
  return {
    diskLimit: false, // /work is the VM's job dir on the host (9p): not limited
    resourceLimits: true, // the guest's own cgroup for the run: memory, pids, CPU time, peak memory
    dedicatedCpus: false,
    detailedMetrics: false, // 9p writes are no block I/O: rusage's bytes would say 0
    services: true,
    coreDumps: false,
  };
}

export class QemuDriver implements EnvironmentDriver {
  readonly kind = 'QEMU' as const;
  readonly capabilities: DriverCapabilities;
  readonly instance = newInstanceName();
  private readonly config;
  private readonly logger: DriverLogger;
  private readonly sandboxUser: SandboxUser | null;
  private readonly stateRoot: string;
  private readonly cgroupParent: string;
  private readonly envs = new Map<string, QemuEnv>();
  private layout: Promise<CgroupLayout> | null = null;
  /** The state root, made once (root-owned 0711 components when dropping privileges); retried after a failure. */
  private readonly stateReady = new Memo<void>(() =>
    this.sandboxUser ? prepareSecureDir(this.stateRoot) : fs.mkdir(this.stateRoot, { recursive: true }).then(() => undefined),
  );
  private accel: Promise<number | null> | null = null;
  private swept: Promise<void> | null = null;
  /** Numbers the VMs of this driver (their state dirs and cgroups). */
  private vmCount = 0;

  constructor(options: QemuDriverOptions) {
    const { logger, ...rest } = options;
    const parsed = qemuDriverConfigSchema.safeParse(rest);
    if (!parsed.success) throw new Error(`QemuDriver: ${parsed.error.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ')}`);
    this.config = parsed.data;
    this.logger = logger ?? SILENT;
    this.capabilities = qemuCapabilities();
    this.sandboxUser = resolveSandboxUser(this.config);
    this.stateRoot = path.join(this.config.stateDir ?? path.join(os.tmpdir(), 'test-orchestrator', 'qemu'), this.instance);
    this.cgroupParent = `${this.config.cgroupParent}/${this.instance}`;
  }

  async preflight(shape: EnvironmentShape): Promise<void> {
    for (const [what, p] of [['QEMU (Debian package qemu-system-x86)', this.config.qemuPath], ['the qboot BIOS (qemu-system-x86)', this.config.biosPath]] as const) {
      if (!existsSync(p)) throw new Error(`${what} is not installed: ${p} is missing`);
    }
    if (this.sandboxUser && !existsSync(this.config.setprivPath)) throw new Error(`setpriv (util-linux) is missing: ${this.config.setprivPath}`);
    const version = await this.currentVersion(shape.image);
    if (!(await readVmImage(version.rootfs)) && !this.config.buildMissingImages) {
      throw new Error(`the VM image of ${shape.image} is not built in ${this.config.imageDir}: run \`npm run images\``);
    }
    if (!this.config.disableCgroups) await this.cgroupLayout();
    await this.sweepOnce();
  }

  /**
   * What QEMU driver instances of dead processes left on this host (a driver host SIGKILLed leaves its
   * VMs running): their QEMU processes killed through their cgroups, the groups and state dirs removed
   * (the container driver's sweep, on this driver's state dirs). Once per driver; never fails.
   */
  private sweepOnce(): Promise<void> {
    this.swept ??= (async () => {
      const layout = this.config.disableCgroups ? null : await this.cgroupLayout().catch(() => null);
      await sweepDeadInstances({ layout, cgroupBase: this.config.cgroupParent, stateBase: path.dirname(this.stateRoot), log: this.logger });
    })().catch((err: Error) => this.logger.warn({ err: err.message }, 'sweep of dead QEMU driver instances failed'));
    return this.swept;
  }

  private async currentVersion(image: string): Promise<{ digest: string; rootfs: string }> {
    const v = await resolveImage(this.config.imageDir, image).catch((err: Error) => {
      throw new InfrastructureError(`image ${image} is not built in ${this.config.imageDir} (${err.message}): run \`npm run images\``);
    });
    if (!v) throw new InfrastructureError(`image ${image} is not built in ${this.config.imageDir}: run \`npm run images\``);
    return { digest: v.digest, rootfs: v.rootfs };
  }

  private async vmImage(rootfs: string): Promise<VmImage> {
    const ready = await readVmImage(rootfs);
    if (ready) return ready;
    if (!this.config.buildMissingImages) throw new InfrastructureError(`the VM image of ${rootfs} is not built: run \`npm run images\``);
    return ensureVmImage(this.config.imageDir, rootfs, this.logger);
  }

  async provision(id: string, shape: EnvironmentShape, signal?: AbortSignal): Promise<QemuHandle> {
    if (!ENV_ID.test(id)) throw new Error(`invalid environment id '${id}'`);
    if (this.envs.has(id)) throw new Error(`environment ${id} already provisioned`);
    const stateDir = path.join(this.stateRoot, id);
    const current = await this.boot(id, shape, await this.currentVersion(shape.image), signal);
    const state: QemuEnv = {
      id, memoryMb: shape.memoryMb, pids: shape.pids, vm: current.vm, jobDir: current.jobDir, seq: current.seq, active: null, rootfs: current.image.rootfs,
      handle: { id, shape, stateDir }, current, spare: null, closing: new AbortController(),
    };
    this.envs.set(id, state);
    this.bootSpare(state);
    return state.handle;
  }

  /** Makes `b` the environment's VM. */
  private adopt(state: QemuEnv, b: BootedVm): void {
    Object.assign(state, { current: b, vm: b.vm, jobDir: b.jobDir, rootfs: b.image.rootfs, seq: b.seq, active: null });
  }

  /** Starts booting the environment's next spare (unless warm resets, or spares, are configured off). */
  private bootSpare(state: QemuEnv): void {
    if (this.config.warmReset || !this.config.spareVms || state.closing.signal.aborted) return;
    const { id, shape } = state.handle;
    const image = state.current.image;
    state.spare = new SpareVm(image.digest, (signal) => this.boot(id, shape, image, signal, true), (b) => this.stopBooted(b), this.logger, id);
  }

  /**
   * A fresh VM for environment `id` on image version `image`, in a state dir and cgroup of its own.
   * `background` (a spare): its cgroup gets a tenth of the default CPU share, so that its boot yields
   * to the test running beside it (measured: a test's start went from ~560 ms to ~1 s with a spare
   * booting at full share on 2 cores); the swap gives it the full share back.
   */
  private async boot(id: string, shape: EnvironmentShape, image: { digest: string; rootfs: string }, signal?: AbortSignal, background = false): Promise<BootedVm> {
    signal?.throwIfAborted();
    const files = await this.vmImage(image.rootfs);
    const n = ++this.vmCount;
    const envDir = path.join(this.stateRoot, id);
    const dir = path.join(envDir, `vm-${n}`);
    const jobDir = path.join(dir, 'job');
    let cgroup: RunCgroup | null = null;
    const undo = async (what: string) => {
      if (cgroup) await bestEffort(this.logger, `removing the cgroup of ${what}`, () => cgroup!.remove());
      await bestEffort(this.logger, `removing the state of ${what}`, () => fs.rm(dir, { recursive: true, force: true }));
    };
    try {
      await this.ensureStateRoot();
      for (const d of [envDir, dir]) {
        await fs.mkdir(d, { mode: 0o711, recursive: true });
        await fs.chmod(d, 0o711);
      }
      for (const d of [jobDir, path.join(dir, 'console')]) await this.ownedDir(d);
      if (!this.config.disableCgroups) {
        cgroup = await RunCgroup.create(await this.cgroupLayout(), this.cgroupParent, `${id.replace(/[^A-Za-z0-9_-]/g, '_')}-vm-${n}`, {
          memoryBytes: (shape.memoryMb + QEMU_OVERHEAD_MB) * 1024 * 1024,
          // the guest's CPUs and one for QEMU's own threads (main loop, 9p, virtio): under TCG a
          // limit of shape.cpus throttles the emulation itself
          cpus: shape.cpus + 1,
          pids: 512,
        }, this.logger);
        if (background) cgroup.setCpuShare(0.1);
      }
    } catch (err) {
      await undo(`the half-made VM ${id}`);
      throw new InfrastructureError(`cannot prepare the VM of ${id}: ${(err as Error).message}`, { cause: err });
    }
    // the probe (up to 8 s) is not waited for by a provision that is aborted (a worker shutting down)
    let kvmGid: number | null;
    try {
      kvmGid = await untilAborted(this.kvm(files.kernel), signal);
    } catch (err) {
      await undo(`a VM of ${id} not booted`);
      throw err;
    }
    const vm = new Vm({
      id, shape, files,
      qemuPath: this.config.qemuPath,
      biosPath: this.config.biosPath,
      jobDir,
      consoleLog: path.join(dir, 'console', 'console.log'),
      dropPrivileges: this.sandboxUser ? qemuPrivileges(this.config.setprivPath, this.sandboxUser, kvmGid) : [],
      procsFiles: cgroup?.procsFiles ?? [],
      kvm: kvmGid !== null,
    });
    try {
      await vm.boot(this.config.bootTimeoutMs, signal);
    } catch (err) {
      await vm.stop();
      await undo(`a VM of ${id} that did not boot`);
      throw err;
    }
    // A first run of the driver's own (`true`), then a warm reset: the guest's first run reads the
    // runner and its programs from disk and TCG translates their code, ~0.5 s more than any later run;
    // paid here rather than by the VM's first test. No test has run in the VM.
    const booted: VmState = { id, memoryMb: shape.memoryMb, pids: shape.pids, vm, jobDir, seq: 0, active: null, rootfs: image.rootfs };
    try {
      const t0 = performance.now();
      const o = await runInVm({ logger: this.logger, owner: this.sandboxUser }, booted, {
        testId: 'warm-up', attempt: 0, script: 'true', env: {}, timeoutMs: 30_000, services: [], artifactPaths: [],
        artifactDir: path.join(dir, 'warm-up'), maxOutputBytes: 4096, signal,
      });
      if (o.exitCode !== 0) throw new InfrastructureError(`the warm-up run ended ${o.signal ?? `with exit code ${o.exitCode}`}: ${o.stderr.slice(-300)}`);
      await warmReset(booted);
      this.logger.info({ envId: id, vm: n, bootMs: vm.bootMs, warmUpMs: Math.round(performance.now() - t0), image: image.digest }, 'VM booted');
    } catch (err) {
      await vm.stop();
      await undo(`a VM of ${id} whose warm-up failed`);
      if (signal?.aborted) throw signal.reason ?? err;
      throw err instanceof InfrastructureError ? err : new InfrastructureError(`the warm-up of a VM of ${id} failed: ${(err as Error).message}`, { cause: err });
    }
    return { vm, dir, jobDir, cgroup, image, seq: booted.seq };
  }

  /** /dev/kvm's group when KVM is used (probed once: a /dev/kvm may hang guests), null for TCG. */
  private kvm(kernel: string): Promise<number | null> {
    this.accel ??= (async () => {
      const gid = kvmGroup(this.config.accel);
      if (gid === null) return null;
      const drop = this.sandboxUser ? qemuPrivileges(this.config.setprivPath, this.sandboxUser, gid) : [];
      const key = `${this.config.qemuPath}\0${kernel}\0${drop.join(' ')}`;
      if (!KVM_PROBES.has(key)) KVM_PROBES.set(key, probeKvm({ qemuPath: this.config.qemuPath, biosPath: this.config.biosPath, kernel, dropPrivileges: drop }));
      const probe = await KVM_PROBES.get(key)!;
      if (!probe.ok && this.config.accel === 'kvm') throw new InfrastructureError(`QEMU_ACCEL=kvm but KVM does not work here: ${probe.why}`);
      this.logger.info({ accel: probe.ok ? 'kvm' : 'tcg', why: probe.why }, probe.ok ? 'QEMU uses KVM' : 'QEMU uses TCG: KVM is there but does not boot a guest');
      return probe.ok ? gid : null;
    })();
    return this.accel;
  }

  private async ownedDir(dir: string): Promise<void> {
    await fs.mkdir(dir, { mode: 0o755 });
    if (this.sandboxUser) await fs.chown(dir, this.sandboxUser.uid, this.sandboxUser.gid);
  }

  async run(env: EnvironmentHandle, spec: RunSpec): Promise<RunOutcome> {
    const state = this.state(env);
    if (state.active) throw new Error(`environment ${env.id} is already running a test`);
    if (spec.image && spec.image.digest !== state.current.image.digest) {
      // another version of the image than the VM's disk: a VM of that version (a cold boot)
      this.logger.info({ envId: env.id, from: state.current.image.digest, to: spec.image.digest }, 'rebooting the VM on the image version of the test');
      await this.stopVm(state);
      this.adopt(state, await this.boot(env.id, env.shape, { digest: spec.image.digest, rootfs: spec.image.rootfs }));
      this.bootSpare(state);
    }
    return runInVm({ logger: this.logger, owner: this.sandboxUser }, state, spec);
  }

  async reset(env: EnvironmentHandle): Promise<void> {
    const state = this.state(env);
    if (state.active) {
      state.active.kill();
      await state.active.done.catch(() => undefined);
    }
    if (!state.vm.alive) throw new InfrastructureError(`the VM of ${env.id} is not running: it cannot be reset`);
    if (!this.config.warmReset) return this.freshVm(state);
    try {
      await warmReset(state);
    } catch (err) {
      state.vm.kill();
      throw err instanceof InfrastructureError ? err : new InfrastructureError(`cannot reset environment ${env.id}: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * The next test gets a VM no test ran in (whatever this one left in its VM goes with it): the spare,
   * booted meanwhile (waited for when its boot still goes on), else one booted now; then the next spare.
   */
  private async freshVm(state: QemuEnv): Promise<void> {
    const { id, shape } = state.handle;
    const image = state.current.image;
    const { signal } = state.closing;
    const destroyed = () => new InfrastructureError(`environment ${id} was destroyed during its reset`);
    // the spare stays the environment's until taken: a destroy meanwhile discards it (aborts its boot)
    const spare = state.spare;
    await this.stopBooted(state.current);
    let next: BootedVm | null = null;
    try {
      if (spare?.digest === image.digest) next = await spare.take();
      else await spare?.discard();
      if (state.spare === spare) state.spare = null;
      if (signal.aborted) {
        if (next) await this.stopBooted(next);
        throw destroyed();
      }
      next ??= await this.boot(id, shape, image, signal);
    } catch (err) {
      if (signal.aborted) throw destroyed();
      throw err instanceof InfrastructureError ? err : new InfrastructureError(`cannot boot a fresh VM for ${id}: ${(err as Error).message}`, { cause: err });
    }
    if (signal.aborted) {
      await this.stopBooted(next);
      throw destroyed();
    }
    const group = next.cgroup;
    if (group) bestEffortSync(this.logger, 'giving the swapped-in VM its full CPU share', () => group.setCpuShare(1));
    this.adopt(state, next);
    this.bootSpareSoon(state);
  }

  /**
   * The next spare boots once the next test's script has started, or SPARE_DELAY_MS after the swap
   * when no test comes: a test's start (the first run in a fresh guest: files copied in, the runner
   * read over 9p) does not share the CPUs with a boot. Measured on 2 cores under TCG, start right
   * after a swap with the spare booting at once: 1,011 ms p50 (max 1,159), 874 ms with the spare at a
   * tenth of the CPU share.
   */
  private bootSpareSoon(state: QemuEnv): void {
    const go = () => {
      clearTimeout(timer);
      state.whenStarted = undefined;
      if (!state.spare) this.bootSpare(state);
    };
    const timer = setTimeout(go, SPARE_DELAY_MS);
    timer.unref();
    state.whenStarted = go;
  }

  async healthCheck(env: EnvironmentHandle): Promise<HealthStatus> {
    const state = this.envs.get(env.id);
    if (!state) return { ok: false, reason: `environment ${env.id} is not provisioned by this driver` };
    if (!state.vm.alive) return { ok: false, reason: `the VM of ${env.id} stopped${(await state.vm.consoleTail(300)) ? `: ${await state.vm.consoleTail(300)}` : ''}` };
    if (state.active) return { ok: true };
    try {
      const answered = state.vm.expect('READY', HEALTH_MS);
      state.vm.send('HELLO');
      await answered;
      return { ok: true };
    } catch (err) {
      return { ok: false, reason: (err as Error).message };
    }
  }

  async usage(env: EnvironmentHandle): Promise<ResourceUsage | null> {
    const state = this.envs.get(env.id);
    const group = state?.active ? state.current.cgroup : null;
    if (!group) return null;
    const stats = await bestEffort(this.logger, 'reading the usage of a VM', () => group.stats(), null);
    if (!stats) return null;
    return { cpuTimeMs: stats.cpuTimeMs, cpuPercent: null, memoryBytes: stats.memoryBytes, peakMemoryBytes: stats.peakMemoryBytes };
  }

  async destroy(env: EnvironmentHandle): Promise<void> {
    const state = this.envs.get(env.id);
    this.envs.delete(env.id);
    if (state) {
      state.closing.abort();
      await this.stopVm(state);
    }
    if (!ENV_ID.test(env.id)) throw new Error(`refusing to remove environment '${env.id}': not an environment id`);
    await fs.rm(path.join(this.stateRoot, env.id), { recursive: true, force: true }).catch((err: Error) => {
      throw new InfrastructureError(`cannot destroy environment ${env.id}: ${err.message}`, { cause: err });
    });
  }

  /** Stops the environment's VM and its spare (aborting its boot). */
  private async stopVm(state: QemuEnv): Promise<void> {
    state.active?.kill();
    const spare = state.spare;
    state.spare = null;
    await Promise.all([this.stopBooted(state.current), spare?.discard()]);
  }

  /** Stops a VM, empties and removes its cgroup, and removes its state dir. */
  private async stopBooted(b: BootedVm): Promise<void> {
    await b.vm.stop();
    if (b.cgroup) {
      const group = b.cgroup;
      await bestEffort(this.logger, 'killing what is left in the cgroup of a VM', () => group.kill(3000));
      await bestEffort(this.logger, 'removing the cgroup of a VM', () => group.remove());
    }
    await bestEffort(this.logger, 'removing the state dir of a VM', () => fs.rm(b.dir, { recursive: true, force: true }));
  }

  async close(): Promise<void> {
    for (const state of this.envs.values()) state.closing.abort();
    await Promise.all([...this.envs.values()].map((state) => this.stopVm(state)));
    this.envs.clear();
    const layout = this.layout ? await bestEffort(this.logger, 'detecting cgroups for close', () => this.layout!, null) : null;
    if (layout) await bestEffort(this.logger, 'removing the cgroups of the QEMU driver', () => removeGroupTree(layout, this.cgroupParent, this.logger));
    this.layout = null;
    this.stateReady.clear();
    await bestEffort(this.logger, 'removing the state dir of the QEMU driver', () => fs.rm(this.stateRoot, { recursive: true, force: true }));
  }

  /** The serial console log of an environment's VM (kept as a LOG artifact when it fails). */
  consoleLogOf(env: EnvironmentHandle): string | null {
    return this.envs.get(env.id)?.vm.consoleLog ?? null;
  }

  /**
   * Runs a shell command in the VM outside any test (as the agent, seeing the guest's processes and
   * the test's root at /m): what the conformance suite's hooks ask of a VM. Its output, stdout and stderr.
   */
  async inspect(env: EnvironmentHandle, command: string): Promise<string> {
    const state = this.state(env);
    const job = state.vm.jobDir;
    await state.vm.frozen(async () => {
      for (const f of ['inspect.sh', 'inspect.out']) await fs.rm(path.join(job, f), { force: true });
      await writeNewFile(path.join(job, 'inspect.sh'), `${command}\n`, 0o644);
    });
    state.seq += 1;
    const done = state.vm.expect(`DONE ${state.seq}`, HEALTH_MS);
    state.vm.send(`EXEC ${state.seq}`);
    await done;
    return state.vm.frozen(async () => {
      const h = await fs.open(path.join(job, 'inspect.out'), fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
      try {
        if (!(await h.stat()).isFile()) throw new Error('inspect.out is not a regular file');
        return await h.readFile('utf8');
      } finally {
        await h.close();
      }
    });
  }

  /** The VM's QEMU process id (tests kill it to play a crash). */
  vmPid(env: EnvironmentHandle): number | undefined {
    return this.envs.get(env.id)?.vm.pid;
  }

  /** The QEMU process id of the environment's spare once booted (undefined while it boots, or with none). */
  sparePid(env: EnvironmentHandle): number | undefined {
    const spare = this.envs.get(env.id)?.spare;
    return spare?.ready ? spare.pid : undefined;
  }

  /** The host dir the current VM shares with its guest over 9p (in/, ctl/, out/ of the run). */
  jobDirOf(env: EnvironmentHandle): string {
    return this.state(env).jobDir;
  }

  private state(env: EnvironmentHandle): QemuEnv {
    const state = this.envs.get(env.id);
    if (!state) throw new InfrastructureError(`environment ${env.id} is not provisioned by this driver`);
    return state;
  }

  private ensureStateRoot(): Promise<void> {
    return this.stateReady.get();
  }


  private cgroupLayout(): Promise<CgroupLayout> {
    this.layout ??= (async () => {
      const layout = await detectCgroupLayout(this.config.cgroupRoot);
      if (!layout) throw new Error(`no usable cgroup hierarchy under ${this.config.cgroupRoot}`);
      await prepareCgroupParent(layout, this.cgroupParent);
      return layout;
    })().catch((err) => {
      this.layout = null;
      throw err;
    });
    return this.layout;
  }
}

/** Throws the last run's files away (its root overlay, /work and /tmp in the guest, in/ ctl/ out/ here); the kernel stays. */
async function warmReset(state: VmState): Promise<void> {
  // frozen: a removal walks names the guest could otherwise swap for links under it
  await state.vm.frozen(async () => {
    for (const d of ['in', 'ctl', 'out']) await fs.rm(path.join(state.jobDir, d), { recursive: true, force: true });
  });
  state.seq += 1;
  const answered = state.vm.expect(`RESET-OK ${state.seq}`, RESET_MS);
  state.vm.send(`RESET ${state.seq}`);
  await answered;
}
