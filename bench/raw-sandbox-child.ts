// The physical limit of the container stack, in a small child process (as the driver host is): `true`
// in a bubblewrap sandbox with the driver's own flags (read-only image, every namespace, seccomp
// filter, environment on a descriptor) started through the driver's join wrapper, joining cgroups as
// the driver does — but no perl runner, no setpriv, no run files, no status, stats or artifacts.
//
// Started by raw-sandbox.ts with its options as JSON in RAW_SANDBOX_OPTIONS; prints one JSON line
// `{ ms, runs, hostCpuMs, sandboxCpuMs }` (or `{ error }`) on stdout and exits: the CPU time of this
// process, and of the runs' groups (0 without cgroups).
//
// cgroups:
//   per-run  a group per run in every hierarchy a driver's run group has (RunCgroup.dirsOf: memory,
//            pids, cpu and, on this hybrid host, the unified tree for cgroup.kill and cpu.stat), limits
//            written, joined, removed after the run; plus the shared cpuset group: the driver's cgroup
//            setup, done the cheapest way (synchronous calls on cgroupfs, the removal retried at once
//            while the last task exits), not by the driver's code.
//   none     no cgroup at all (for scale).
// The CPU of the runs' groups: cpuacct, or cpu.stat of a v2 group, read before each is removed.

import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { DEFAULT_CGROUP_PARENT, DEFAULT_SETPRIV_PATH } from '../src/config/container-driver';
import { detectCgroupLayout, prepareCgroupParent, type CgroupLayout } from '../src/environments/cgroups/layout';
import { RunCgroup } from '../src/environments/cgroups/run-cgroup';
import { removeGroupTree } from '../src/environments/cgroups/sweep';
import { buildBwrapArgs, bwrapEnvData } from '../src/environments/container/bwrap-args';
import { defaultCpuLockDir, prepareCpuReservations } from '../src/environments/container/dedicated-cpus';
import { ENV_FD, SECCOMP_FD, sandboxCommand } from '../src/environments/container/sandbox-command';
import { DEFAULT_SANDBOX_GID, DEFAULT_SANDBOX_UID, setprivArgs } from '../src/environments/container/sandbox-user';
import { SCRIPT_NAME } from '../src/environments/container/runner-script';
import { buildSeccompFilter } from '../src/environments/container/seccomp';
import { copyTree } from '../src/environments/container/bundle-lowers';
import { MountHelper } from '../src/environments/container/mount-helper';

export interface RawSandboxOptions {
  rootfs: string;
  runs: number;
  concurrency: number;
  cgroups: 'per-run' | 'none';
  memoryMb: number;
  cpus: number;
  pids: number;
  /** As the driver: bwrap started by setpriv as the sandbox user (65534), not as root. Default false. */
  dropPrivileges?: boolean;
  /** The sandbox's command; default /bin/true. */
  command?: string[];
  /** The command as pid 1 (`--as-pid-1`, as the driver runs an image with perl); default true. */
  asPid1?: boolean;
  /** Written once per lane to the work dir as the driver's script file (for a command that runs it). */
  script?: string;
  /**
   * An unpacked bundle (bench-bundle.ts): copied once, owned by the sandbox's user, as the lower layer of
   * an overlay mounted over the work dir before each run and unmounted after it, its upper layer then
   * removed: the driver's way (work-inputs.ts) without its code.
   */
  bundleDir?: string;
}

const SILENT = { info() {}, warn() {}, error() {} };

/** A group in the hierarchies a driver's run group has, with its limits, made synchronously; its directories. */
function makeGroup(layout: CgroupLayout, parent: string, name: string, o: RawSandboxOptions): string[] {
  const dirs: string[] = [];
  const w = (dir: string, file: string, value: string) => writeFileSync(join(dir, file), value);
  for (const [ctrl, d] of RunCgroup.dirsOf(layout, parent, name, false)) {
    mkdirSync(d);
    dirs.push(d);
    if (ctrl === 'v2') {
      w(d, 'memory.max', String(o.memoryMb * 1024 * 1024));
      w(d, 'pids.max', String(o.pids));
      w(d, 'cpu.max', `${o.cpus * 100_000} 100000`);
    } else if (ctrl === 'memory') {
      w(d, 'memory.limit_in_bytes', String(o.memoryMb * 1024 * 1024));
      if (existsSync(join(d, 'memory.memsw.limit_in_bytes'))) w(d, 'memory.memsw.limit_in_bytes', String(o.memoryMb * 1024 * 1024));
      w(d, 'memory.swappiness', '0');
    } else if (ctrl === 'pids') w(d, 'pids.max', String(o.pids));
    else if (ctrl === 'cpu') {
      w(d, 'cpu.cfs_period_us', '100000');
      w(d, 'cpu.cfs_quota_us', String(o.cpus * 100_000));
    }
  }
  return dirs;
}

/** CPU time charged to the group so far (ms): cpuacct, or cpu.stat of a v2 group. */
function groupCpuMs(layout: CgroupLayout, dirs: string[]): number {
  const cpuacct = layout.version === 1 ? dirs.find((x) => x.startsWith(`${layout.mounts.get('cpuacct')}/`)) : undefined;
  if (cpuacct) return Number(readFileSync(join(cpuacct, 'cpuacct.usage'), 'utf8')) / 1e6;
  const v2 = layout.version === 2 ? dirs[0] : dirs.find((x) => layout.unified && x.startsWith(`${layout.unified}/`));
  const m = v2 ? /^usage_usec (\d+)$/m.exec(readFileSync(join(v2, 'cpu.stat'), 'utf8')) : null;
  return m ? Number(m[1]) / 1000 : 0;
}

/** Removes the group's directories, retrying at once while a task is still leaving (EBUSY). */
async function removeGroup(dirs: string[]): Promise<void> {
  for (const d of [...dirs].reverse()) {
    for (let i = 0; ; i++) {
      try {
        rmdirSync(d);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EBUSY' || i > 100_000) throw err;
        await new Promise((r) => setImmediate(r));
      }
    }
  }
}

async function main(): Promise<{ ms: number; runs: number; hostCpuMs: number; sandboxCpuMs: number }> {
  const o = JSON.parse(process.env.RAW_SANDBOX_OPTIONS ?? '{}') as RawSandboxOptions;
  const scratch = mkdtempSync(join(tmpdir(), 'orch-bench-raw-'));
  const user = o.dropPrivileges ? { uid: DEFAULT_SANDBOX_UID, gid: DEFAULT_SANDBOX_GID } : null;
  if (user) chmodSync(scratch, 0o711);
  const parent = `${DEFAULT_CGROUP_PARENT}/bench-raw-${process.pid}`;
  const mounts = o.bundleDir ? new MountHelper() : null;
  const lower = join(scratch, 'lower');
  // the per-run layers on a tmpfs: the cheapest place (this host's / is ext4 mounted with `discard`,
  // where each unlink costs milliseconds; the driver's are on the environment's own disk)
  const layersRoot = join(scratch, 'layers');
  if (o.bundleDir) {
    await copyTree(o.bundleDir, lower, user);
    mkdirSync(layersRoot, { mode: 0o711 });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256m,mode=0711', 'tmpfs', layersRoot]);
  }
  const layout = o.cgroups === 'none' ? null : await detectCgroupLayout();
  if (o.cgroups !== 'none' && !layout) throw new Error('no usable cgroup layout');
  try {
    const filter = buildSeccompFilter('baseline');
    const seccompFile = join(scratch, 'seccomp.bpf');
    if (filter) writeFileSync(seccompFile, filter, { mode: 0o600 });
    let shared: string | null = null;
    if (layout) {
      await prepareCgroupParent(layout, parent);
      const reservations = await prepareCpuReservations({ layout, cgroupBase: DEFAULT_CGROUP_PARENT, lockDir: defaultCpuLockDir(), secure: process.getuid?.() === 0, log: SILENT });
      shared = await reservations.sharedProcsFile();
    }
    const memoryBytes = o.memoryMb * 1024 * 1024;
    let seq = 0;
    let sandboxCpuMs = 0;
    const lane = async (i: number): Promise<void> => {
      const work = join(scratch, `work-${i}`);
      const ctl = join(scratch, `ctl-${i}`);
      mkdirSync(work);
      mkdirSync(ctl);
      if (o.script !== undefined) writeFileSync(join(work, SCRIPT_NAME), o.script, { mode: 0o644 });
      if (user) for (const d of [work, ctl]) chownSync(d, user.uid, user.gid);
      {
        while (seq < o.runs) {
          const n = ++seq;
          const layers = join(layersRoot, `${i}`);
          if (mounts) {
            mkdirSync(layers);
            mkdirSync(join(layers, 'upper'));
            mkdirSync(join(layers, 'work'));
            if (user) chownSync(join(layers, 'upper'), user.uid, user.gid);
            await mounts.mountOverlay(work, `lowerdir=${lower},upperdir=${layers}/upper,workdir=${layers}/work,volatile`);
          }
          const group = layout ? makeGroup(layout, parent, `run-${n}`, o) : null;
          const seccompFd = filter ? openSync(seccompFile, 'r') : undefined;
          const cmd = sandboxCommand({
            seccompFd,
            procsFiles: [...(group ?? []).map((d) => join(d, 'cgroup.procs')), ...(shared ? [shared] : [])],
            exec: [
              ...(user ? setprivArgs(DEFAULT_SETPRIV_PATH, user) : []),
              '/usr/bin/bwrap',
              ...buildBwrapArgs({
                rootfs: o.rootfs, workDir: work, ctlDir: ctl, env: {}, envFd: ENV_FD, command: o.command ?? ['/bin/true'],
                disableUserns: true, seccompFd: filter ? SECCOMP_FD : undefined, tmpSizeBytes: memoryBytes, asPid1: o.asPid1 ?? true,
              }),
            ],
          });
          const child = spawn(cmd.command, cmd.args, { stdio: cmd.stdio, env: {}, cwd: '/' });
          if (seccompFd !== undefined) closeSync(seccompFd);
          child.stdin!.on('error', () => undefined);
          let err = '';
          child.stderr!.on('data', (c: Buffer) => (err += c.toString('utf8')));
          child.stdin!.end(bwrapEnvData({}));
          const code = await new Promise<number | null>((resolve, reject) => {
            child.once('error', reject);
            child.once('close', (c) => resolve(c));
          });
          if (code !== 0) throw new Error(`raw sandbox run exited ${code}: ${err}`);
          if (group) {
            // the last task may still be leaving: its share is (nearly) all in by now
            sandboxCpuMs += groupCpuMs(layout!, group);
            await removeGroup(group);
          }
          if (mounts) {
            await mounts.unmount(work);
            rmSync(layers, { recursive: true, force: true });
          }
        }
      }
    };
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    await Promise.all(Array.from({ length: o.concurrency }, (_, i) => lane(i)));
    const cpu = process.cpuUsage(cpu0);
    return { ms: performance.now() - t0, runs: o.runs, hostCpuMs: (cpu.user + cpu.system) / 1000, sandboxCpuMs };
  } finally {
    mounts?.close();
    if (o.bundleDir) execFileSync('umount', [layersRoot]);
    if (layout) await removeGroupTree(layout, parent, SILENT).catch(() => undefined);
    rmSync(scratch, { recursive: true, force: true });
  }
}

main().then(
  (r) => {
    process.stdout.write(`${JSON.stringify(r)}\n`);
    process.exit(0);
  },
  (err: Error) => {
    process.stdout.write(`${JSON.stringify({ error: err.stack ?? err.message })}\n`);
    process.exit(1);
  },
);
