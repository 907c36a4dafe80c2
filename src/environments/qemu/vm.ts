// One QEMU process and the line channel to its guest agent (guest-agent.ts).
//
// QEMU runs with -sandbox on (its own seccomp filter: no spawning, no privilege changes), no default
// devices and no network device, as the unprivileged sandbox user (setpriv) when the driver is root,
// in a cgroup of its own (memory: the guest's plus QEMU's overhead). Its devices: the image's disk
// read-only, the job dir over 9p, the serial console to a file (kept as a LOG artifact when the VM
// fails), and a virtio-serial port whose host end is QEMU's stdin/stdout: the agent's channel.
// KVM when /dev/kvm is there, else TCG.

import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, promises as fs, statSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { onAbort } from '../../infra/abort';
import { inheritableFds } from '../../infra/inherited-fds';
import { InfrastructureError, type EnvironmentShape } from '../driver';
import { AGENT_PORT, JOB_TAG } from './guest-agent';

export interface VmFiles {
  disk: string;
  kernel: string;
  initrd: string;
}

export interface VmOptions {
  id: string;
  shape: EnvironmentShape;
  files: VmFiles;
  qemuPath: string;
  biosPath: string;
  /** Shared with the guest over 9p. */
  jobDir: string;
  consoleLog: string;
  /** setpriv … (empty when the driver is not root). */
  dropPrivileges: string[];
  /** cgroup.procs files QEMU joins before it execs. */
  procsFiles: string[];
  kvm: boolean;
}

/** Memory QEMU itself needs beside the guest's RAM (its code, TCG's translation cache, 9p buffers). */
export const QEMU_OVERHEAD_MB = 256;
/** TCG's translation cache in MiB. */
const TCG_TB_MB = 64;

/** Which accelerator: KVM when /dev/kvm is there and usable ('auto'), else TCG. */
export type Accel = 'auto' | 'kvm' | 'tcg';

/** /dev/kvm's group when KVM can be used (QEMU, dropped to the sandbox user, gets it as its only group). */
export function kvmGroup(accel: Accel): number | null {
  if (accel === 'tcg') return null;
  try {
    accessSync('/dev/kvm', fsConstants.R_OK | fsConstants.W_OK);
    return statSync('/dev/kvm').gid;
  } catch (err) {
    if (accel === 'kvm') throw new Error(`QEMU_ACCEL=kvm but /dev/kvm is not usable: ${(err as Error).message}`);
    return null; // no /dev/kvm: TCG
  }
}

/**
 * Whether a kernel boots under KVM here: some hosts give a /dev/kvm that hangs a guest before its
 * first line (nested virtualisation). Watches the serial console for the kernel's banner; ~0.5 s
 * when KVM works, `timeoutMs` when it does not.
 */
/** Probes still running: killed when this process exits (a hung KVM guest would outlive it). */
const probes = new Set<ChildProcess>();
process.once('exit', () => probes.forEach((c) => c.kill('SIGKILL')));

export function probeKvm(o: { qemuPath: string; biosPath: string; kernel: string; dropPrivileges: string[] }, timeoutMs = 8000): Promise<{ ok: boolean; why: string }> {
  const argv = [
    ...o.dropPrivileges, o.qemuPath, '-machine', 'q35,accel=kvm', '-cpu', 'host', '-bios', o.biosPath, '-m', '128M', '-display', 'none',
    '-nodefaults', '-no-user-config', '-no-reboot', '-nic', 'none', '-sandbox', 'on', '-serial', 'stdio',
    '-kernel', o.kernel, '-append', 'console=ttyS0 earlyprintk=ttyS0 loglevel=7 panic=-1 rdinit=/nonexistent',
  ];
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: '/usr/bin:/bin' }, cwd: '/' });
    probes.add(child);
    let out = '';
    let err = '';
    const end = (r: { ok: boolean; why: string }) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      probes.delete(child);
      resolve(r);
    };
    const timer = setTimeout(() => end({ ok: false, why: `no kernel banner within ${timeoutMs} ms under KVM` }), timeoutMs);
    child.stdout!.on('data', (c: Buffer) => {
      out = (out + c.toString('latin1')).slice(-4000);
      if (/Linux version/.test(out)) end({ ok: true, why: 'the kernel booted under KVM' });
    });
    child.stderr!.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-1000)));
    child.once('error', (e) => end({ ok: false, why: e.message }));
    child.once('exit', (code) => end({ ok: false, why: `QEMU exited (${code}): ${err.trim()}` }));
  });
}

/** setpriv to the sandbox user, with /dev/kvm's group when KVM is used. */
export function qemuPrivileges(setprivPath: string, user: { uid: number; gid: number }, kvmGid: number | null): string[] {
  return [
    setprivPath, `--reuid=${user.uid}`, `--regid=${user.gid}`,
    ...(kvmGid === null ? ['--clear-groups'] : [`--groups=${kvmGid}`]),
    '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs', '--',
  ];
}

export function qemuArgs(o: VmOptions, kvm: boolean): string[] {
  return [
    // TCG's translation cache is bounded (its default, up to 1 GiB, counts against QEMU's memory limit)
    '-machine', 'q35', '-accel', kvm ? 'kvm' : `tcg,tb-size=${TCG_TB_MB}`,
    '-bios', o.biosPath,
    '-cpu', kvm ? 'host' : 'max',
    '-smp', String(o.shape.cpus),
    '-m', `${o.shape.memoryMb}M`,
    '-display', 'none', '-nodefaults', '-no-user-config', '-no-reboot', '-nic', 'none',
    '-sandbox', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny',
    '-serial', `file:${o.consoleLog}`,
    '-kernel', o.files.kernel,
    '-initrd', o.files.initrd,
    '-append', 'console=ttyS0 panic=-1 quiet loglevel=3',
    '-drive', `file=${o.files.disk},if=virtio,format=qcow2,readonly=on`,
    '-fsdev', `local,id=job,path=${o.jobDir},security_model=none`,
    '-device', `virtio-9p-pci,fsdev=job,mount_tag=${JOB_TAG}`,
    '-device', 'virtio-serial-pci',
    '-chardev', 'stdio,id=agent,signal=off',
    '-device', `virtserialport,chardev=agent,name=${AGENT_PORT}`,
  ];
}

/** Joins the cgroup (its own pid: QEMU starts inside), closes inherited descriptors, then execs. */
const JOIN_AND_EXEC = [
  'n=$1; shift',
  'while [ "$n" -gt 0 ]; do eval "exec $1>&-"; shift; n=$((n - 1)); done',
  'n=$1; shift',
  'while [ "$n" -gt 0 ]; do echo $$ > "$1" || { echo "cannot join cgroup $1" >&2; exit 125; }; shift; n=$((n - 1)); done',
  'exec "$@"',
].join('\n');

type Waiter = { match: string; resolve(): void; reject(e: Error): void; dispose(): void };

export class Vm {
  private child: ChildProcess | null = null;
  private buffer = '';
  private waiters: Waiter[] = [];
  private exitError: InfrastructureError | null = null;
  private stderr = '';
  readonly exited: Promise<void>;
  private markExited!: () => void;
  bootMs: number | null = null;

  constructor(private readonly o: VmOptions) {
    this.exited = new Promise((r) => (this.markExited = r));
  }

  get alive(): boolean {
    return this.child !== null && this.exitError === null;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /**
   * `fn` with the whole VM stopped (SIGSTOP to QEMU, SIGCONT after): while the host works in the job
   * dir as root, nothing of the guest (root in it, maybe still running something a test left) can
   * change a name there under it — QEMU's 9p server, its only way to the job dir, is stopped too.
   */
  async frozen<T>(fn: () => Promise<T>): Promise<T> {
    const pid = this.child?.pid;
    if (pid === undefined || !this.alive) throw new InfrastructureError('the VM is not running');
    process.kill(pid, 'SIGSTOP');
    try {
      return await fn();
    } finally {
      try {
        process.kill(pid, 'SIGCONT');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err; // gone meanwhile: its exit says so
      }
    }
  }

  /** Starts QEMU and waits for the agent's READY (repeating HELLO: the guest may miss the first). */
  async boot(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const t0 = performance.now();
    const toClose = inheritableFds().filter((fd) => fd > 2);
    const command = toClose.some((fd) => fd > 9) ? '/bin/bash' : '/bin/sh';
    const args = [
      // bash reads ~/.bashrc when its stdin is a socket (node's pipes are)
      ...(command === '/bin/bash' ? ['--norc', '--noprofile'] : []),
      '-c', JOIN_AND_EXEC, 'join',
      String(toClose.length), ...toClose.map(String),
      String(this.o.procsFiles.length), ...this.o.procsFiles,
      ...this.o.dropPrivileges, this.o.qemuPath, ...qemuArgs(this.o, this.o.kvm),
    ];
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: '/usr/bin:/bin', TMPDIR: this.o.jobDir }, cwd: '/' });
    this.child = child;
    child.stdout!.setEncoding('latin1');
    child.stdout!.on('data', (chunk: string) => this.onData(chunk));
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => (this.stderr = (this.stderr + chunk).slice(-4000)));
    child.stdin!.on('error', () => undefined); // a dead VM: its exit says it
    child.once('exit', (code, sig) => {
      this.exitError = new InfrastructureError(
        `the VM ${this.o.id} stopped (QEMU ${sig ?? `exit code ${code}`})${this.stderr.trim() ? `: ${this.stderr.trim().slice(-1000)}` : ''}`,
      );
      for (const w of this.waiters) w.reject(this.exitError);
      this.waiters = [];
      this.markExited();
    });
    child.once('error', (err) => {
      this.exitError = new InfrastructureError(`cannot start QEMU (${this.o.qemuPath}): ${err.message}`);
      for (const w of this.waiters) w.reject(this.exitError);
      this.waiters = [];
      this.markExited();
    });
    const hello = setInterval(() => this.send('HELLO'), 500);
    // an abort that came before QEMU started (while the driver prepared the VM) kills it at once
    const detach = onAbort(signal, () => this.kill());
    try {
      await this.expect('READY', timeoutMs);
      this.bootMs = Math.round(performance.now() - t0);
    } catch (err) {
      this.kill();
      if (signal?.aborted) throw signal.reason ?? new Error('provisioning aborted');
      const tail = await this.consoleTail();
      throw new InfrastructureError(`${(err as Error).message}${tail ? `; console: ${tail}` : ''}`, { cause: err });
    } finally {
      clearInterval(hello);
      detach();
    }
  }

  send(line: string): void {
    if (this.alive && this.child?.stdin?.writable) this.child.stdin.write(`${line}\n`);
  }

  /** Waits for the line `match` from the agent; an InfrastructureError when the VM stops or time runs out. */
  expect(match: string, timeoutMs: number): Promise<void> {
    if (this.exitError) return Promise.reject(this.exitError);
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new InfrastructureError(`the agent of VM ${this.o.id} did not answer ${match} within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      const waiter: Waiter = {
        match,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
        dispose: () => clearTimeout(timer),
      };
      this.waiters.push(waiter);
    });
  }

  /** Stops waiting for `match` (its promise never settles). */
  forget(match: string): void {
    this.waiters = this.waiters.filter((w) => {
      if (w.match !== match) return true;
      w.resolve = () => undefined;
      w.dispose();
      return false;
    });
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl).replace(/\r$/, '');
      this.buffer = this.buffer.slice(nl + 1);
      const i = this.waiters.findIndex((w) => w.match === line);
      if (i >= 0) this.waiters.splice(i, 1)[0].resolve();
    }
    if (this.buffer.length > 4096) this.buffer = this.buffer.slice(-4096);
  }

  kill(): void {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }

  async stop(): Promise<void> {
    this.kill();
    if (this.child) await Promise.race([this.exited, new Promise((r) => setTimeout(r, 5000).unref())]);
  }

  /** The end of the serial console, one line (for error messages). */
  async consoleTail(max = 600): Promise<string> {
    const text = await fs.readFile(this.o.consoleLog, 'latin1').catch(() => '');
    return text.slice(-max).replace(/\s+/g, ' ').trim();
  }

  get consoleLog(): string {
    return this.o.consoleLog;
  }

  get jobDir(): string {
    return this.o.jobDir;
  }

  static jobPath(jobDir: string, rel: string): string {
    return path.join(jobDir, rel);
  }
}
