// The security audit of a SECURITY run (isolation 'hardened'): what its processes were denied and what
// they executed, written as the LOG artifact `security-audit.log`.
//
// Denied system calls: bwrap loads the strict filter with prctl(PR_SET_SECCOMP), which has no flags,
// so its denials are not audited (measured: a call it answers with EPERM leaves no record). The run's
// first program is therefore a few lines of Perl (the LOADER) that load the same rules again with
// seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_LOG) and exec the runner: the newest filter
// that gives the winning action is the one the kernel asks whether to log, so each denial is audited
// (type 1326: pid, comm, exe, syscall) and received by audit-listener.ts, told apart by an audit login
// uid of the run's own. The loader then makes one denied call (unshare(0), a no-op if it were ever
// allowed): that first record confirms the filter is loaded and the records reach us. Images
// without /usr/bin/perl get no loader (the audit says so). Other choices measured: SECCOMP_RET_USER_NOTIF
// needs a supervisor holding the listener descriptor (a compiled helper, or one the test could kill,
// inside the sandbox); the kernel log (dmesg) is rate-limited to 10 lines per 5 s for the whole host.
//
// Executed programs: exec-trace.ts (a tracefs instance per run, sched_process_exec).
//
// Cost: only SECURITY runs pay it (a Perl listener and a trace instance started beside the sandbox,
// one more exec inside it); other runs take none of this path.

import { randomInt } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { bestEffort } from '../../infra/best-effort';
import { AuditListener, MAX_RECORDS, type AuditSummary } from './audit-listener';
import { ExecTraceHost, type ExecTraceResult } from './exec-trace';
import type { DriverLogger } from './image';
import { buildSeccompFilter, deniedSyscalls } from './seccomp';

export const SECURITY_AUDIT_LOG = 'security-audit.log';
/** Lines of the executed-programs listing and of the denial listing kept in the log. */
const MAX_EXEC_LINES = 200;
const MAX_DENIAL_LINES = 50;
const MAX_DISTINCT = 100;
const AUDIT_ARCH_X86_64 = 'c000003e';
const NR_UNSHARE = 272;
const X32_SYSCALL_BIT = 0x40000000;

/** Runs inside the sandbox: `perl -e LOADER -- HEX COMMAND...`. */
const LOADER = [
  'my $p = pack("H*", shift @ARGV);',
  'my $f = pack("S x6 Q", length($p) / 8, unpack("Q", pack("p", $p)));',
  `if (syscall(317, 1, 2, $f) == 0) { syscall(${NR_UNSHARE}, 0); }`,
  'else { print STDERR "[orchestrator] security audit: cannot load the audit filter ($!): denials are not recorded\\n"; }',
  'exec { $ARGV[0] } @ARGV; print STDERR "[orchestrator] cannot execute $ARGV[0]: $!\\n"; exit 127;',
].join(' ');

const NAMES: Record<number, string> = Object.fromEntries([
  ...Object.entries(deniedSyscalls('strict')).map(([name, nr]) => [nr, name]),
  [56, 'clone'],
  [135, 'personality'],
  [435, 'clone3'],
]);

function syscallName(nr: number, arch: string): string {
  if (arch !== AUDIT_ARCH_X86_64) return `syscall ${nr} of arch ${arch}`;
  if (nr >= X32_SYSCALL_BIT) return `x32 syscall ${nr - X32_SYSCALL_BIT}`;
  return NAMES[nr] ?? `syscall ${nr}`;
}

function action(code: string, sig: number): string {
  if (code === '0x50000') return 'EPERM';
  if (code === '0x80000000' || code === '0x0') return `killed${sig ? ` (signal ${sig})` : ''}`;
  return `action ${code}`;
}

/** A value of the sandbox's, on one line of the log. */
function shown(s: string): string {
  return JSON.stringify(s).slice(1, -1);
}

export interface AuditSession {
  /** For the join wrapper (sandbox-command.ts); unset when denials are not monitored. */
  readonly loginuid: number | undefined;
  /** Put before the sandbox's command. */
  readonly commandPrefix: string[];
  /** Once the run's processes are dead: collects, writes the log to `file` (root's, new). */
  finish(file: string, wrapperPid: number | undefined): Promise<void>;
  /** Releases what is left (always called). */
  dispose(): Promise<void>;
}

/** One per driver: begins a session for each SECURITY run. */
export class SecurityAuditor {
  private readonly traces: ExecTraceHost;
  private filterHex: string | null | undefined;

  constructor(
    driverInstance: string,
    private readonly log: DriverLogger,
  ) {
    this.traces = new ExecTraceHost(driverInstance, log);
  }

  /** Never throws: what cannot be monitored is said in the log. */
  async begin(o: { imageHasPerl: boolean; withServices: boolean }): Promise<AuditSession> {
    try {
      return await this.start(o);
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'security audit not started');
      const note = `nothing was monitored: ${(err as Error).message}`;
      return {
        loginuid: undefined,
        commandPrefix: [],
        finish: (file) => fs.writeFile(file, formatAudit({ denials: null, executed: null, notes: [note], wrapperPid: undefined, loader: false }), { mode: 0o600, flag: 'wx' }),
        dispose: async () => undefined,
      };
    }
  }

  private async start(o: { imageHasPerl: boolean; withServices: boolean }): Promise<AuditSession> {
    const log = this.log;
    if (this.filterHex === undefined) this.filterHex = buildSeccompFilter('strict', process.arch, { forAudit: true })?.toString('hex') ?? null;
    const notes: string[] = [];
    const auid = randomInt(2 ** 31, 2 ** 32 - 2);
    const canLoad = o.imageHasPerl && this.filterHex !== null;
    if (!o.imageHasPerl) notes.push('denied system calls are not monitored: the image has no /usr/bin/perl to load the audit filter');
    else if (this.filterHex === null) notes.push(`denied system calls are not monitored: no seccomp table for ${process.arch}`);
    const [listener, trace] = await Promise.all([
      canLoad ? AuditListener.start(auid, log) : Promise.resolve(null),
      this.traces.begin().catch((err: Error) => ({ unavailable: err.message })),
    ]);
    if (listener && 'unavailable' in listener) notes.push(`denied system calls are not monitored: ${listener.unavailable}`);
    if ('unavailable' in trace) notes.push(`executed programs are not monitored: ${trace.unavailable}`);
    const audit = listener && !('unavailable' in listener) ? listener : null;
    const execs = 'unavailable' in trace ? null : trace;
    if (notes.length) log.warn({ notes }, 'security audit incomplete');
    return {
      loginuid: audit ? auid : undefined,
      commandPrefix: audit ? ['/usr/bin/perl', '-e', LOADER, '--', this.filterHex!] : [],
      finish: async (file, wrapperPid) => {
        const [denials, executed] = await Promise.all([
          audit ? audit.stop() : Promise.resolve(null),
          execs ? readTrace(() => execs.finish(wrapperPid), log) : Promise.resolve(null),
        ]);
        const text = formatAudit({ denials, executed, notes, wrapperPid, loader: audit !== null, withServices: o.withServices });
        await fs.writeFile(file, text, { mode: 0o600, flag: 'wx' });
      },
      dispose: async () => {
        // Both are no-ops after finish().
        audit?.kill();
        execs?.cancel();
      },
    };
  }

  /** Waits for what runs left being removed. */
  close(): Promise<void> {
    return this.traces.close();
  }
}

async function readTrace(finish: () => Promise<ExecTraceResult>, log: DriverLogger): Promise<ExecTraceResult | { unavailable: string }> {
  const r = await bestEffort(log, 'reading the exec trace of a security run', finish, null);
  return r ?? { unavailable: 'the trace could not be read (see the driver log)' };
}

interface AuditInput {
  denials: AuditSummary | null;
  executed: ExecTraceResult | { unavailable: string } | null;
  notes: string[];
  wrapperPid: number | undefined;
  /** The loader ran first in the sandbox (its exec and sentinel are the orchestrator's own). */
  loader: boolean;
  /** Services ran: the runner shell's own commands are among the execs. */
  withServices?: boolean;
}

/** The text of security-audit.log. Pure. */
export function formatAudit(a: AuditInput): string {
  const out: string[] = ['# security audit (hardened profile: strict seccomp filter, no capabilities, no user namespaces, read-only but /work)', ''];
  const limits = [...a.notes];

  out.push('## denied system calls');
  const d = a.denials;
  if (!d) out.push('(not monitored)');
  else {
    // The loader's own denied call is the first record: it confirms the filter is loaded.
    const first = d.records[0];
    const sentinel = first && first.syscall === NR_UNSHARE && first.arch === AUDIT_ARCH_X86_64 && first.code === '0x50000' && /perl/.test(first.exe) ? first : null;
    if (!sentinel) limits.push('the audit filter did not confirm it was loaded (no record of its test call): denials may be missing');
    const records = sentinel ? d.records.slice(1) : d.records;
    const counts = d.counts
      .map((c) => (sentinel && c.syscall === sentinel.syscall && c.arch === sentinel.arch && c.code === sentinel.code && c.exe === sentinel.exe ? { ...c, count: c.count - 1 } : c))
      .filter((c) => c.count > 0);
    const total = d.total - (sentinel ? 1 : 0);
    const bySyscall = new Map<string, { name: string; count: number; how: Set<string>; exes: Map<string, number> }>();
    for (const c of counts) {
      const name = syscallName(c.syscall, c.arch);
      const e = bySyscall.get(name) ?? { name, count: 0, how: new Set<string>(), exes: new Map<string, number>() };
      e.count += c.count;
      e.how.add(action(c.code, c.sig));
      e.exes.set(c.exe, (e.exes.get(c.exe) ?? 0) + c.count);
      bySyscall.set(name, e);
    }
    if (total === 0) out.push('none');
    else {
      out.push(`${total} denied call${total === 1 ? '' : 's'}, by system call (count, outcome, by program):`);
      for (const e of [...bySyscall.values()].sort((x, y) => y.count - x.count || x.name.localeCompare(y.name))) {
        const exes = [...e.exes.entries()].sort((x, y) => y[1] - x[1]).map(([exe, n]) => `${shown(exe)} ${n}`);
        out.push(`  ${e.name.padEnd(18)} ${String(e.count).padStart(6)}  ${[...e.how].join(', ')}  (${exes.join(', ')})`);
      }
      if (d.uncounted) out.push(`  and ${d.uncounted} more not broken down (more than the distinct kinds kept)`);
      // From the loader's call (the sandbox's start), else from the first denial.
      const t0 = (sentinel ?? records[0])?.at ?? null;
      out.push('', `in order (the first ${Math.min(MAX_DENIAL_LINES, records.length)}; times from the sandbox's start, to the kernel's ~4 ms; pids are host pids):`);
      for (const r of records.slice(0, MAX_DENIAL_LINES)) {
        const at = r.at !== null && t0 !== null ? `+${r.at - t0} ms`.padStart(10) : ''.padStart(10);
        out.push(`  ${at}  pid ${r.pid}  ${syscallName(r.syscall, r.arch)}  ${action(r.code, r.sig)}  ${shown(r.exe)} (comm ${shown(r.comm)})`);
      }
      if (d.records.length >= MAX_RECORDS && total > records.length) out.push(`  … ${total - records.length} more (only the first ${MAX_RECORDS} records are kept)`);
    }
    if (d.overruns) limits.push(`the audit socket overflowed ${d.overruns} time(s): some denials were not received, counts are low`);
    if (!d.drained) limits.push('not every audit record of the run was confirmed received (no end marker): counts may be low');
    if (d.kernelLost) limits.push(`the kernel lost ${d.kernelLost} audit record(s) host-wide during the run (backlog or rate limit): counts may be low`);
    if (d.auditDaemonPid) limits.push(`the host's audit daemon (pid ${d.auditDaemonPid}) also received these records`);
  }

  out.push('', '## executed programs');
  const x = a.executed;
  if (!x) out.push('(not monitored)');
  else if ('unavailable' in x) {
    out.push('(not monitored)');
    limits.push(`executed programs: ${x.unavailable}`);
  } else {
    // The join wrapper's own execs (setpriv, bwrap) are the driver's; then the loader, then the runner.
    let events = x.events.filter((e) => e.pid !== a.wrapperPid);
    if (a.loader && events[0]?.filename === '/usr/bin/perl') events = events.slice(1);
    const runner = events[0];
    const counts = new Map<string, number>();
    for (const e of events.slice(1)) counts.set(e.filename, (counts.get(e.filename) ?? 0) + 1);
    const n = Math.max(0, events.length - 1);
    out.push(`${n} exec${n === 1 ? '' : 's'} after the orchestrator's runner (paths as the sandbox saw them; a #! script shows as its own path), by program:`);
    const distinct = [...counts.entries()].sort((p, q) => q[1] - p[1] || p[0].localeCompare(q[0]));
    for (const [name, n] of distinct.slice(0, MAX_DISTINCT)) out.push(`  ${String(n).padStart(6)}  ${shown(name)}`);
    if (distinct.length > MAX_DISTINCT) out.push(`  and ${distinct.length - MAX_DISTINCT} more programs`);
    out.push('', `in order (the first ${Math.min(MAX_EXEC_LINES, events.length)}; times from the runner's start; pids are host pids):`);
    const t0 = events[0]?.ts ?? 0n;
    for (const e of events.slice(0, MAX_EXEC_LINES)) {
      const ms = `+${Number((e.ts - t0) / 1000n) / 1000} ms`.padStart(12);
      out.push(`  ${ms}  pid ${e.pid}  ${shown(e.filename)}${e === runner ? '  (the orchestrator\'s runner)' : ''}`);
    }
    if (events.length > MAX_EXEC_LINES) out.push(`  … ${events.length - MAX_EXEC_LINES} more`);
    if (x.dropped) limits.push(`the exec trace buffer (${x.bufferKb} KiB per CPU) was full: ${x.dropped} exec(s) not recorded`);
    if (x.problem) limits.push(`part of the exec trace could not be read: ${x.problem}`);
    if (a.withServices) limits.push("with services, the runner shell's own commands (date, sleep between ready checks, sh, perl) are among the executed programs");
  }

  out.push(
    '',
    '## limits',
    ...limits.map((l) => `- ${l}`),
    '- only calls the filter denies are listed; calls that failed for other reasons (permissions, a read-only file system) are not',
    '- clone3 fails with ENOSYS for every process (glibc then uses clone, whose flags the filter checks) and is not listed',
    '- executed programs are the paths given to successful execs, without their arguments',
    '- with no audit daemon the kernel also prints each record to its own log, rate-limited (about 10 lines per 5 s for the whole host); this audit does not depend on that log',
    '',
  );
  return out.join('\n');
}
