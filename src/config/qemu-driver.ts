// The QEMU driver's configuration section: its programs, where it keeps its VMs' state, which cgroups
// its QEMU processes run in. Built from IMAGE_DIR, SANDBOX_USER and the container driver's cgroup
// settings (one cgroup tree per host), plus QEMU_* variables; the driver never reads the environment.

import path from 'node:path';
import { z } from 'zod';
import { DEFAULT_CGROUP_PARENT, DEFAULT_CGROUP_ROOT, DEFAULT_SETPRIV_PATH, flag } from './container-driver';

const absolutePath = z.string().min(1).refine((p) => path.isAbsolute(p) && !p.includes('\0'), 'an absolute path');
const NOT_ROOT = 'must be a positive integer (not root)';
const hostId = z.number({ error: NOT_ROOT }).int({ error: NOT_ROOT }).min(1, { error: NOT_ROOT }).max(0xfffffffe, { error: NOT_ROOT });

export const DEFAULT_QEMU_PATH = '/usr/bin/qemu-system-x86_64';
/** qboot: a direct kernel boot 1.5 s sooner than SeaBIOS under TCG (PROBES.md). */
export const DEFAULT_QEMU_BIOS = '/usr/share/qemu/qboot.rom';

export const qemuDriverConfigSchema = z.object({
  /** Image cache: IMAGE_DIR/<image>/<version>/{rootfs, vm-<key>/} (src/images/vm-image.ts). */
  imageDir: absolutePath,
  qemuPath: absolutePath.default(DEFAULT_QEMU_PATH),
  biosPath: absolutePath.default(DEFAULT_QEMU_BIOS),
  setprivPath: absolutePath.default(DEFAULT_SETPRIV_PATH),
  /** Where VMs keep their job dir and console log; unset: `<os tmpdir>/test-orchestrator/qemu`. */
  stateDir: absolutePath.optional(),
  /** Host uid/gid QEMU runs as when the driver runs as root; default 65534/65534. */
  sandboxUid: hostId.optional(),
  sandboxGid: hostId.optional(),
  cgroupRoot: absolutePath.default(DEFAULT_CGROUP_ROOT),
  cgroupParent: z.string().min(1).default(DEFAULT_CGROUP_PARENT),
  disableCgroups: z.boolean().default(false),
  /** KVM when /dev/kvm is usable (auto), or always TCG, or KVM or fail (QEMU_ACCEL). */
  accel: z.enum(['auto', 'kvm', 'tcg']).default('auto'),
  /** How long a VM may take from QEMU's start to its agent's first answer (TCG: ~6-12 s). */
  bootTimeoutMs: z.number().int().min(1000).max(600_000).default(90_000),
  /** provision builds a missing VM image of a built rootfs (seconds: mkfs, initramfs) instead of failing. */
  buildMissingImages: z.boolean().default(true),
  /**
   * false (the default): every test gets a VM no test ran in before — the reset boots a new one (a cold
   * boot, seconds under TCG). true: the reset keeps the VM and throws away the test's root (under a
   * second), but a test is root in its VM and can leave something running for the next tests of that
   * VM to meet: only for tests that trust each other (QEMU_WARM_RESET).
   */
  warmReset: z.boolean().default(false),
  /**
   * true (the default): each environment keeps a spare VM booted beside the one that runs its test, and
   * the reset swaps it in (milliseconds instead of a cold boot), at the cost of a second VM's memory.
   * Unused with warmReset (QEMU_SPARE_VMS).
   */
  spareVms: z.boolean().default(true),
});

/** The QEMU_* variables (merged into config.ts's environment schema). */
export const qemuDriverEnv = {
  QEMU_ACCEL: z.preprocess((v) => (v === '' ? undefined : v), z.enum(['auto', 'kvm', 'tcg']).default('auto')),
  QEMU_WARM_RESET: flag(false),
  QEMU_SPARE_VMS: flag(true),
};

export type QemuDriverConfig = z.output<typeof qemuDriverConfigSchema>;
export type QemuDriverConfigInput = z.input<typeof qemuDriverConfigSchema>;
