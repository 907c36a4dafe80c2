// Receives the kernel's seccomp audit records (type 1326, AUDIT_SECCOMP) of one SECURITY run.
//
// Measured on these hosts (kernel 6.18, no audit daemon, audit not enabled): a filter loaded with
// SECCOMP_FILTER_FLAG_LOG makes the kernel audit every call it answers with ERRNO. Without an audit
// daemon, kauditd prints the records to the kernel log through printk_ratelimit (10 lines per 5 s for
// the whole host: of 1000 denials, 7 reached dmesg), so the kernel log cannot give counts. The audit
// netlink socket's multicast group AUDIT_NLGRP_READLOG (CAP_AUDIT_READ) gets every record instead,
// daemon or not: 1000 of 1000 arrived. Node cannot open a netlink socket, so a few lines of host Perl
// (perl-base is Essential in Debian) listen for the run, as root, and report at the end.
//
// The records of the run are told apart by their audit login uid (auid=): the join wrapper sets a
// value of its own before it drops privileges (sandbox-command.ts) and every process of the run
// inherits it; an unprivileged process cannot change it. Pids in records are host pids.
//
// The end of the run's records: at stop, the listener makes one denied call itself (getpmsg, which
// Linux does not implement, under a filter of its own with the LOG flag) and reads on until that
// record arrives: the kernel queues audit records in one FIFO, so every record of the run made before
// it was delivered first. What may still be missing is said in the summary: records the socket had
// no room for (ENOBUFS), the kernel's own count of lost audit records over the run (host-wide, from
// AUDIT_GET), a marker that never came. Memory and output are bounded: counts per distinct (syscall,
// arch, action, executable), at most MAX_KEYS of them, and the first MAX_RECORDS records.

import { spawn } from 'node:child_process';
import type { DriverLogger } from './image';

export const MAX_RECORDS = 200;
const MAX_KEYS = 500;
/** getpmsg: not implemented by Linux (ENOSYS either way), so the marker filter changes nothing. */
const NR_MARKER = 181;
const PERL = '/usr/bin/perl';
const START_TIMEOUT_MS = 5000;
const STOP_TIMEOUT_MS = 5000;
const MAX_OUTPUT_BYTES = 1024 * 1024;

// Netlink numbers: AF_NETLINK 16, SOCK_RAW 3, NETLINK_AUDIT 9, group AUDIT_NLGRP_READLOG 1,
// AUDIT_GET 1000 (reply: struct audit_status, lost = 7th u32, pid of the audit daemon = 4th),
// NLMSG_ERROR 2, SO_RCVBUFFORCE 33, SO_RCVBUF 8. Output lines are tab-separated; comm and exe stay in
// the kernel's encoding ("quoted" without spaces or quotes, or hex), which holds no tab or newline.
const LISTENER = String.raw`
use strict; use warnings;
my ($auid, $mark, $maxrec, $maxkeys) = @ARGV;
$SIG{PIPE} = 'IGNORE'; $| = 1;
sub fail { print "fail\t$_[0]\n"; exit 1; }
socket(my $s, 16, 3, 9) or fail("netlink audit socket: $!");
setsockopt($s, 1, 33, pack("i", 16 << 20)) or setsockopt($s, 1, 8, pack("i", 16 << 20));
bind($s, pack("S S L L", 16, 0, 0, 1)) or fail("joining the audit log group (needs CAP_AUDIT_READ): $!");
my $prog = pack("S C C L", 0x20, 0, 0, 0) . pack("S C C L", 0x15, 0, 1, $mark)
  . pack("S C C L", 0x06, 0, 0, 0x00050026) . pack("S C C L", 0x06, 0, 0, 0x7fff0000);
my $fprog = pack("S x6 Q", 4, unpack("Q", pack("p", $prog)));
syscall(157, 38, 1, 0, 0, 0);
syscall(317, 1, 2, $fprog) == 0 or fail("seccomp filter with SECCOMP_FILTER_FLAG_LOG: $!");
my $seq = 0; my @lost; my $auditd = 0;
sub audit_get { send($s, pack("L S S L L", 16, 1000, 1, ++$seq, 0), 0, pack("S S L L", 16, 0, 0, 0)); }
audit_get();
# One pattern for the fields kept (comm and exe hold no space: the kernel hex-encodes odd strings).
my $re = qr/^audit\((\d+\.\d+):\d+\): .*? pid=(\d+) comm=(\S+) exe=(\S+) sig=(\d+) arch=(\w+) syscall=(\d+) .*?code=(0x[0-9a-f]+)/;
my ($mine, $theirs) = (" pid=$$ ", " auid=$auid ");
my (%count, @rec); my ($n, $other, $overruns, $marked, $stopping, $waits, $replies, $stopped_at) = (0, 0, 0, 0, 0, 0, 0, 0);
print "ready\n";
while (1) {
  my $rin = ''; vec($rin, fileno($s), 1) = 1; vec($rin, fileno(STDIN), 1) = 1 unless $stopping;
  my $ready = select(my $rout = $rin, undef, undef, $stopping ? 0.05 : undef);
  last if $stopping && (time - $stopped_at > 3 || ($ready == 0 && ++$waits >= 40));
  next if $ready <= 0;
  if (!$stopping && vec($rout, fileno(STDIN), 1)) {
    my $got = sysread(STDIN, my $b, 64);
    if (!$got) { $stopping = 1; $stopped_at = time; audit_get(); syscall($mark + 0); }
  }
  next unless vec($rout, fileno($s), 1);
  my $buf; my $from = recv($s, $buf, 65536, 0x40);
  if (!defined $from) { $overruns++ if $!{ENOBUFS}; next; }
  while (length($buf) >= 16) {
    my ($len, $type) = unpack("L S", $buf);
    last if $len < 16 || $len > length($buf);
    my $body = substr($buf, 16, $len - 16);
    substr($buf, 0, ($len + 3) & ~3, '');
    if ($type == 1000 && length($body) >= 28) { my @st = unpack("L7", $body); push @lost, $st[6]; $auditd = $st[3]; $replies++; next; }
    if ($type == 2) { $replies++; next; }
    next unless $type == 1326;
    if (index($body, $mine) >= 0 && index($body, " syscall=$mark ") >= 0) { $marked = 1; next; }
    next unless index($body, $theirs) >= 0;
    my ($ts, $pid, $comm, $exe, $sig, $arch, $nr, $code) = $body =~ $re or next;
    $n++;
    push @rec, join("\t", 'rec', $ts, $nr, $arch, $sig, $code, $comm, $exe, $pid) if @rec < $maxrec;
    my $key = join("\t", $nr, $arch, $sig, $code, $exe);
    if (exists $count{$key} || keys(%count) < $maxkeys) { $count{$key}++ } else { $other++ }
  }
  last if $marked && $replies >= 2;
}
print "$_\n" for @rec;
print "count\t$_\t$count{$_}\n" for sort keys %count;
print "stat\trecords\t$n\nstat\tother\t$other\nstat\toverruns\t$overruns\nstat\tdrained\t$marked\nstat\tauditd\t$auditd\n";
print "stat\tlost\t", join("\t", @lost), "\n" if @lost;
print "end\n";
`;

export interface DenialRecord {
  /** Milliseconds since the epoch (the kernel's coarse clock). */
  at: number | null;
  pid: number;
  syscall: number;
  /** AUDIT_ARCH_* in hex, e.g. c000003e (x86_64). */
  arch: string;
  /** Signal sent (31 for a kill), 0 for a denial answered with an error. */
  sig: number;
  /** The seccomp action, e.g. 0x50000 (ERRNO), 0x80000000 (KILL_PROCESS). */
  code: string;
  comm: string;
  exe: string;
}

export interface DenialCount {
  syscall: number;
  arch: string;
  sig: number;
  code: string;
  exe: string;
  count: number;
}

export interface AuditSummary {
  records: DenialRecord[];
  counts: DenialCount[];
  /** Records of the run received (all, also those beyond the kept ones). */
  total: number;
  /** Records beyond the distinct-key cap, counted but not by key. */
  uncounted: number;
  /** Times the socket had no room for a record (each lost one or more). */
  overruns: number;
  /** The end marker arrived: every record of the run was delivered. */
  drained: boolean;
  /** Audit records the kernel lost host-wide during the run, or null when it could not be asked. */
  kernelLost: number | null;
  /** Pid of a host audit daemon the records also went to (0: none). */
  auditDaemonPid: number;
}

/** The kernel's encoding of an untrusted audit string: "quoted", or hex when it held odd bytes. */
export function decodeAuditString(v: string): string {
  if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) return v.slice(1, -1);
  if (/^(?:[0-9A-F]{2})+$/.test(v)) return Buffer.from(v, 'hex').toString('utf8');
  return v;
}

export function parseListenerOutput(text: string): AuditSummary {
  const s: AuditSummary = { records: [], counts: [], total: 0, uncounted: 0, overruns: 0, drained: false, kernelLost: null, auditDaemonPid: 0 };
  for (const line of text.split('\n')) {
    const f = line.split('\t');
    if (f[0] === 'rec' && f.length === 9) {
      s.records.push({
        at: f[1] === '-' ? null : Math.round(Number(f[1]) * 1000),
        syscall: Number(f[2]),
        arch: f[3],
        sig: Number(f[4]),
        code: f[5],
        comm: decodeAuditString(f[6]),
        exe: decodeAuditString(f[7]),
        pid: Number(f[8]),
      });
    } else if (f[0] === 'count' && f.length === 7) {
      s.counts.push({ syscall: Number(f[1]), arch: f[2], sig: Number(f[3]), code: f[4], exe: decodeAuditString(f[5]), count: Number(f[6]) });
    } else if (f[0] === 'stat') {
      if (f[1] === 'records') s.total = Number(f[2]);
      else if (f[1] === 'other') s.uncounted = Number(f[2]);
      else if (f[1] === 'overruns') s.overruns = Number(f[2]);
      else if (f[1] === 'drained') s.drained = f[2] === '1';
      else if (f[1] === 'auditd') s.auditDaemonPid = Number(f[2]);
      else if (f[1] === 'lost' && f.length >= 4) s.kernelLost = Math.max(0, Number(f[3]) - Number(f[2]));
    }
  }
  return s;
}

/** One listener process, started before the sandbox and stopped after it died. */
export class AuditListener {
  private output = '';
  private bytes = 0;
  private readonly closed: Promise<void>;

  private constructor(private readonly child: ReturnType<typeof spawn>) {
    this.closed = new Promise((resolve) => child.once('close', () => resolve()));
  }

  /** Starts listening for records with `auid`; resolves once it listens, or with why it cannot. */
  static async start(auid: number, log: DriverLogger): Promise<AuditListener | { unavailable: string }> {
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(PERL, ['-e', LISTENER, String(auid), String(NR_MARKER), String(MAX_RECORDS), String(MAX_KEYS)], {
        stdio: ['pipe', 'pipe', 'pipe'],
        env: {},
        cwd: '/',
      });
    } catch (err) {
      return { unavailable: `cannot start ${PERL}: ${(err as Error).message}` };
    }
    const listener = new AuditListener(child);
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => {
      if (stderr.length < 4096) stderr += b.toString('utf8');
    });
    child.stdin!.on('error', (err: Error) => log.info({ err: err.message }, 'security audit listener: stdin closed early'));
    const ready = await new Promise<string | null>((resolve) => {
      const timer = setTimeout(() => resolve(`no answer within ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS);
      child.stdout!.on('data', (b: Buffer) => {
        if (listener.bytes + b.length <= MAX_OUTPUT_BYTES) listener.output += b.toString('utf8');
        listener.bytes += b.length;
        if (listener.output.startsWith('ready\n')) {
          clearTimeout(timer);
          resolve(null);
        } else if (/^fail\t.*\n/.test(listener.output)) {
          clearTimeout(timer);
          resolve(listener.output.slice(5).trim());
        }
      });
      child.once('error', (err) => {
        clearTimeout(timer);
        resolve(`${PERL}: ${err.message}`);
      });
      child.once('close', (code) => {
        clearTimeout(timer);
        resolve(`the listener exited (${code}): ${stderr.trim().slice(0, 500) || 'no output'}`);
      });
    });
    if (ready !== null) {
      child.kill('SIGKILL');
      return { unavailable: ready };
    }
    listener.output = '';
    return listener;
  }

  /** Stops listening once the run's records are all in (or STOP_TIMEOUT_MS passed); what it got. */
  async stop(): Promise<AuditSummary> {
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await this.closed;
    clearTimeout(timer);
    const summary = parseListenerOutput(this.output);
    if (!/\nend\n$|^end\n$/.test(this.output)) summary.drained = false;
    return summary;
  }

  /** Ends the listener without waiting for a summary (a run that failed to start). */
  kill(): void {
    this.child.kill('SIGKILL');
  }
}
