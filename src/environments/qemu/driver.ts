// The QEMU environment driver: each environment is a VM booted once (provision) and kept warm; a test
// runs in it through the guest agent (run.ts, guest-agent.ts), and the reset throws the test's root
// overlay and work dir away while the kernel stays up (no cold boot). The VM files of an image version
// are built by `npm run images` (src/images/vm-image.ts), or here at provision when missing.
//
// Host side: QEMU (vm.ts) as the unprivileged sandbox user when the driver is root, in a cgroup of its
// own below `<cgroupParent>/<instance>/`, its state (job dir shared over 9p, console log) in
// `<stateDir>/<instance>/<id>/`.

import { constants as fsConstants, existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeNewFile } from '../container/host-files';
import { qemuDriverConfigSchema, type QemuDriverConfigInput } from '../../config/qemu-driver';
import { bestEffort } from '../../infra/best-effort';
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
import { prepareSecureDir, resolveSandboxUser, type SandboxUser } from '../container/sandbox-user';
import { runInVm, type VmState } from './run';
import { QEMU_OVERHEAD_MB, Vm, kvmGroup, probeKvm, qemuPrivileges } from './vm';

export type QemuDriverOptions = QemuDriverConfigInput & { logger?: DriverLogger };

/** The QEMU driver's handle: the common one and the host dir of the VM's state. */
export interface QemuHandle extends EnvironmentHandle {
  readonly stateDir: string;
}

interface QemuEnv extends VmState {
  handle: QemuHandle;
  image: { digest: string; rootfs: string };
  cgroup: RunCgroup | null;
}

const ENV_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const SILENT: DriverLogger = { info: () => undefined, warn: () => undefined, error: () => undefined };
const RESET_MS = 15_000;
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
    const state = await this.boot(id, shape, await this.currentVersion(shape.image), signal);
    this.envs.set(id, state);
    return state.handle;
  }

  /** A fresh VM for environment `id` on image version `image`. */
  private async boot(id: string, shape: EnvironmentShape, image: { digest: string; rootfs: string }, signal?: AbortSignal): Promise<QemuEnv> {
    signal?.throwIfAborted();
    const files = await this.vmImage(image.rootfs);
    const stateDir = path.join(this.stateRoot, id);
    const jobDir = path.join(stateDir, 'job');
    let cgroup: RunCgroup | null = null;
    try {
      await this.ensureStateRoot();
      await fs.rm(stateDir, { recursive: true, force: true });
      await fs.mkdir(stateDir, { mode: 0o711 });
      await fs.chmod(stateDir, 0o711);
      for (const d of [jobDir, path.join(stateDir, 'console')]) await this.ownedDir(d);
      if (!this.config.disableCgroups) {
        cgroup = await RunCgroup.create(await this.cgroupLayout(), this.cgroupParent, `${id.replace(/[^A-Za-z0-9_-]/g, '_')}-vm`, {
          memoryBytes: (shape.memoryMb + QEMU_OVERHEAD_MB) * 1024 * 1024,
          // the guest's CPUs and one for QEMU's own threads (main loop, 9p, virtio): under TCG a
          // limit of shape.cpus throttles the emulation itself
          cpus: shape.cpus + 1,
          pids: 512,
        }, this.logger);
      }
    } catch (err) {
      await bestEffort(this.logger, `removing the half-made VM ${id}`, () => fs.rm(stateDir, { recursive: true, force: true }));
      throw new InfrastructureError(`cannot prepare the VM of ${id}: ${(err as Error).message}`, { cause: err });
    }
    // the probe (up to 8 s) is not waited for by a provision that is aborted (a worker shutting down)
    let kvmGid: number | null;
    try {
      kvmGid = await untilAborted(this.kvm(files.kernel), signal);
    } catch (err) {
      if (cgroup) await bestEffort(this.logger, 'removing the cgroup of a VM not booted', () => cgroup!.remove());
      await bestEffort(this.logger, `removing the half-made VM ${id}`, () => fs.rm(stateDir, { recursive: true, force: true }));
      throw err;
    }
    const vm = new Vm({
      id, shape, files,
      qemuPath: this.config.qemuPath,
      biosPath: this.config.biosPath,
      jobDir,
      consoleLog: path.join(stateDir, 'console', 'console.log'),
      dropPrivileges: this.sandboxUser ? qemuPrivileges(this.config.setprivPath, this.sandboxUser, kvmGid) : [],
      procsFiles: cgroup?.procsFiles ?? [],
      kvm: kvmGid !== null,
    });
    try {
      await vm.boot(this.config.bootTimeoutMs, signal);
    } catch (err) {
      await vm.stop();
      if (cgroup) await bestEffort(this.logger, 'removing the cgroup of a VM that did not boot', () => cgroup!.remove());
      throw err;
    }
    this.logger.info({ envId: id, bootMs: vm.bootMs, image: image.digest }, 'VM booted');
    return {
      id, memoryMb: shape.memoryMb, pids: shape.pids, vm,
      jobDir,
      seq: 0, active: null, rootfs: image.rootfs,
      handle: { id, shape, stateDir }, image, cgroup,
    };
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
    let state = this.state(env);
    if (state.active) throw new Error(`environment ${env.id} is already running a test`);
    if (spec.image && spec.image.digest !== state.image.digest) {
      // another version of the image than the VM's disk: a VM of that version (a cold boot)
      this.logger.info({ envId: env.id, from: state.image.digest, to: spec.image.digest }, 'rebooting the VM on the image version of the test');
      await this.stopVm(state);
      state = await this.boot(env.id, env.shape, { digest: spec.image.digest, rootfs: spec.image.rootfs });
      this.envs.set(env.id, state);
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
    if (!this.config.warmReset) {
      // the next test gets a VM no test ran in: whatever this one left in its VM goes with it
      await this.stopVm(state);
      try {
        this.envs.set(env.id, await this.boot(env.id, env.shape, state.image));
      } catch (err) {
        throw err instanceof InfrastructureError ? err : new InfrastructureError(`cannot boot a fresh VM for ${env.id}: ${(err as Error).message}`, { cause: err });
      }
      return;
    }
    try {
      // frozen: a removal walks names the guest could otherwise swap for links under it
      await state.vm.frozen(async () => {
        for (const d of ['in', 'ctl', 'out']) await fs.rm(path.join(state.jobDir, d), { recursive: true, force: true });
      });
      state.seq += 1;
      const answered = state.vm.expect(`RESET-OK ${state.seq}`, RESET_MS);
      state.vm.send(`RESET ${state.seq}`);
      await answered;
    } catch (err) {
      state.vm.kill();
      throw err instanceof InfrastructureError ? err : new InfrastructureError(`cannot reset environment ${env.id}: ${(err as Error).message}`, { cause: err });
    }
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
    if (!state?.active || !state.cgroup) return null;
    const stats = await bestEffort(this.logger, 'reading the usage of a VM', () => state.cgroup!.stats(), null);
    if (!stats) return null;
    return { cpuTimeMs: stats.cpuTimeMs, cpuPercent: null, memoryBytes: stats.memoryBytes, peakMemoryBytes: stats.peakMemoryBytes };
  }

  async destroy(env: EnvironmentHandle): Promise<void> {
    const state = this.envs.get(env.id);
    this.envs.delete(env.id);
    if (state) await this.stopVm(state);
    if (!ENV_ID.test(env.id)) throw new Error(`refusing to remove environment '${env.id}': not an environment id`);
    await fs.rm(path.join(this.stateRoot, env.id), { recursive: true, force: true }).catch((err: Error) => {
      throw new InfrastructureError(`cannot destroy environment ${env.id}: ${err.message}`, { cause: err });
    });
  }

  private async stopVm(state: QemuEnv): Promise<void> {
    state.active?.kill();
    await state.vm.stop();
    if (state.cgroup) {
      const group = state.cgroup;
      await bestEffort(this.logger, 'killing what is left in the cgroup of a VM', () => group.kill(3000));
      await bestEffort(this.logger, 'removing the cgroup of a VM', () => group.remove());
    }
  }

  async close(): Promise<void> {
    for (const state of this.envs.values()) await this.stopVm(state);
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

/** `p`, or a rejection as soon as `signal` aborts (`p` goes on by itself). */
function untilAborted<T>(p: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return p;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason ?? new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
