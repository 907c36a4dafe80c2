// The spare VM of a QEMU environment: booted in the background while the environment's current VM
// serves a test, so that the reset (which by default gives the next test a VM no test ran in) swaps it
// in instead of waiting for a cold boot (seconds under TCG). One spare per environment: it costs a
// second VM's memory, and is booted again after each swap.

import type { DriverLogger } from '../container/image';
import type { RunCgroup } from '../cgroups/run-cgroup';
import type { Vm } from './vm';

/** A booted VM and what is its own on the host: its state dir (job dir, console log) and its cgroup. */
export interface BootedVm {
  vm: Vm;
  /** `<stateRoot>/<env>/vm-<n>`: removed with the VM. */
  dir: string;
  jobDir: string;
  cgroup: RunCgroup | null;
  image: { digest: string; rootfs: string };
  /** The agent's message number reached by the driver's warm-up. */
  seq: number;
}

export class SpareVm {
  private readonly controller = new AbortController();
  private readonly booting: Promise<BootedVm | null>;
  private booted: BootedVm | null = null;

  /**
   * Starts `boot`; a boot that fails is logged (the next reset boots a VM itself), one that is aborted
   * (discard) is not.
   */
  constructor(
    readonly digest: string,
    boot: (signal: AbortSignal) => Promise<BootedVm>,
    private readonly stop: (b: BootedVm) => Promise<void>,
    logger: DriverLogger,
    envId: string,
  ) {
    this.booting = boot(this.controller.signal).then(
      (b) => (this.booted = b),
      (err: Error) => {
        if (!this.controller.signal.aborted) logger.warn({ envId, err: err.message }, 'the spare VM did not boot: the next reset boots one itself');
        return null;
      },
    );
  }

  /** Whether the spare has booted and still runs (a reset that takes it now waits for nothing). */
  get ready(): boolean {
    return this.booted?.vm.alive ?? false;
  }

  get pid(): number | undefined {
    return this.booted?.vm.pid;
  }

  /**
   * The spare once booted (waiting for the boot when it still goes on), now owned by the caller; null
   * when it did not boot or has died since (then stopped and removed here).
   */
  async take(): Promise<BootedVm | null> {
    const b = await this.booting;
    if (b && !b.vm.alive) {
      await this.stop(b);
      return null;
    }
    return b;
  }

  /** Aborts the boot, or stops the booted spare; its dir and cgroup go with it. */
  async discard(): Promise<void> {
    this.controller.abort(new Error('the spare VM is no longer needed'));
    const b = await this.booting;
    if (b) await this.stop(b);
  }
}
