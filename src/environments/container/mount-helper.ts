// Mounts, unmounts and space reservations for the runs' overlays (work-inputs.ts) as system calls in
// one long-lived helper process of the driver (the host's perl, as the driver's user: root), instead
// of a `mount`, `umount` or `fallocate` process per call. Measured on the 2-core dev host: a process
// start from the driver is 2–3 ms each (5 ms and more on a loaded host), three per test; a request to
// the helper is a pipe round trip plus the system call, well under a millisecond.
//
// The protocol: one request per line, fields separated by NUL (no path here holds NUL or a newline:
// refused before sending), answered in order by "ok" or "err ERRNO MESSAGE". Only three operations,
// with the arguments the driver gives: it executes nothing else. Without perl, or on an architecture
// whose system call numbers are not known here, the tools are run as processes instead.

import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { constants as fsConstants, existsSync, promises as fs } from 'node:fs';
import { exec, tool } from './work-fs';

/** mount, umount2, fallocate (asm-generic numbers on arm64 and riscv64). */
const SYSCALLS: Partial<Record<string, [number, number, number]>> = {
  x64: [165, 166, 285],
  arm64: [40, 39, 47],
  riscv64: [40, 39, 47],
};

const PERL_PATHS = ['/usr/bin/perl', '/bin/perl'];

const SCRIPT = String.raw`
use strict; use warnings; use Fcntl;
$| = 1;
my ($mount, $umount2, $fallocate) = @ARGV;
while (defined(my $line = <STDIN>)) {
  chomp $line;
  my ($op, @a) = split /\0/, $line, -1;
  my $r = -1;
  if ($op eq 'mount' && @a == 5) {
    $r = syscall($mount, $a[0], $a[1], $a[2], $a[3] + 0, $a[4]);
  } elsif ($op eq 'umount' && @a == 1) {
    $r = syscall($umount2, $a[0], 0);
  } elsif ($op eq 'fallocate' && @a == 2) {
    if (sysopen(my $fh, $a[0], O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600)) {
      $r = syscall($fallocate, fileno($fh), 0, 0, $a[1] + 0);
      my $e = $! + 0;
      close $fh;
      $! = $e;
    }
  } else {
    $! = 22;
  }
  if ($r == -1) { printf "err %d %s\n", $! + 0, "$!"; } else { print "ok\n"; }
}
`;

const MS_NOSUID = 2;
const MS_NODEV = 4;

/** Whether the helper's process and pipes keep this process alive. */
function refs(child: ChildProcessWithoutNullStreams, on: boolean): void {
  for (const h of [child, child.stdin, child.stdout, child.stderr] as unknown as { ref?: () => void; unref?: () => void }[]) {
    if (on) h.ref?.();
    else h.unref?.();
  }
}

interface Pending {
  resolve(): void;
  reject(err: Error): void;
  what: string;
}

export class MountHelper {
  private child: ChildProcessWithoutNullStreams | null = null;
  private pending: Pending[] = [];
  private buffered = '';
  private readonly perl: string | null;
  private readonly numbers: [number, number, number] | null;

  constructor(o: { perl?: string | null; arch?: string } = {}) {
    this.perl = o.perl === undefined ? (PERL_PATHS.find((p) => existsSync(p)) ?? null) : o.perl;
    this.numbers = SYSCALLS[o.arch ?? process.arch] ?? null;
  }

  /** Whether calls go to the helper (else each is a process of its own). */
  get usesHelper(): boolean {
    return this.perl !== null && this.numbers !== null;
  }

  /** An overlay of `lower` under `upper` (with `work`) mounted at `target`, nosuid and nodev. */
  async mountOverlay(target: string, options: string): Promise<void> {
    if (!this.usesHelper) return exec(await tool('mount'), ['-n', '--no-canonicalize', '-t', 'overlay', '-o', `nosuid,nodev,${options}`, 'orch-work', target]);
    return this.call(`mount overlay on ${target}`, ['mount', 'orch-work', target, 'overlay', String(MS_NOSUID | MS_NODEV), options]);
  }

  async unmount(target: string): Promise<void> {
    if (!this.usesHelper) return exec(await tool('umount'), ['-n', '--no-canonicalize', target], { timeoutMs: 120_000 });
    return this.call(`umount ${target}`, ['umount', target]);
  }

  /** Creates `file` (never over anything, never through a link) with `bytes` allocated and nothing written. */
  async reserve(file: string, bytes: number): Promise<void> {
    if (!this.usesHelper) {
      const h = await fs.open(file, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, 0o600);
      try {
        return await exec(await tool('fallocate'), ['-l', String(bytes), '/dev/fd/3'], { fd3: h.fd });
      } finally {
        await h.close();
      }
    }
    return this.call(`fallocate ${bytes} bytes for ${file}`, ['fallocate', file, String(Math.floor(bytes))]);
  }

  /** Stops the helper (it is started again by the next call). */
  close(): void {
    const child = this.child;
    this.child = null;
    if (child) {
      child.stdin.end();
      child.kill('SIGKILL');
    }
    this.fail(new Error('the mount helper was stopped'));
  }

  private call(what: string, fields: string[]): Promise<void> {
    if (fields.some((f) => /[\0\n]/.test(f))) return Promise.reject(new Error(`${what}: a path with a NUL or a newline`));
    const child = this.ensure();
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ resolve, reject, what });
      refs(child, true); // an answer awaited keeps the process alive
      child.stdin.write(`${fields.join('\0')}\n`);
    });
  }

  private ensure(): ChildProcessWithoutNullStreams {
    if (this.child) return this.child;
    const child = spawn(this.perl!, ['-e', SCRIPT, ...this.numbers!.map(String)], { stdio: ['pipe', 'pipe', 'pipe'], env: {}, cwd: '/' });
    this.child = child;
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => {
      if (stderr.length < 2000) stderr += c.toString('utf8');
    });
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (text: string) => {
      this.buffered += text;
      for (let nl = this.buffered.indexOf('\n'); nl !== -1; nl = this.buffered.indexOf('\n')) {
        const line = this.buffered.slice(0, nl);
        this.buffered = this.buffered.slice(nl + 1);
        const p = this.pending.shift();
        if (!this.pending.length) refs(child, false);
        if (!p) continue;
        if (line === 'ok') p.resolve();
        else p.reject(new Error(`${p.what}: ${line.replace(/^err \d+ /, '')}`));
      }
    });
    child.stdin.on('error', () => undefined); // a helper that died: 'exit' below fails what waits
    child.once('exit', (code, signal) => {
      if (this.child === child) this.child = null;
      this.buffered = '';
      this.fail(new Error(`the mount helper ended (${signal ?? `exit ${code}`})${stderr.trim() ? `: ${stderr.trim().slice(-300)}` : ''}`));
    });
    refs(child, false); // the driver's process may end while the helper idles
    return child;
  }

  private fail(err: Error): void {
    const waiting = this.pending;
    this.pending = [];
    for (const p of waiting) p.reject(new Error(`${p.what}: ${err.message}`));
  }
}
