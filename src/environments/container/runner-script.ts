// The small shell program that runs first inside the sandbox: it marks the start, allows core
// dumps, starts the declared services and waits for their ready checks, then runs the test script
// and records its raw wait status. Pure: returns text.
//
// Exit status: bwrap reports a child killed by signal N as exit code 128+N, and so does sh's `$?`,
// which makes `kill -SEGV $$` and `exit 139` look the same. The script is therefore run by a few
// lines of Perl (perl-base is Essential in Debian, so it is in every minbase image) that fork, exec
// and waitpid, and write `exit N` or `signal N` to the status file. Images without perl fall back to
// sh and write `exit-ambiguous N`: the driver then decodes N > 128 as a signal (documented guess).
//
// Where a C compiler is at hand the same job is done by the native runner (native-runner.ts), bound
// into every sandbox, and perl is not needed.
//
// The runner (native, or perl in the image) is also the sandbox's pid 1 (bwrap --as-pid-1, see
// buildDirectCommand below): it reaps every process orphaned to it while the script runs, and when it
// exits the kernel kills what is left of the namespace before bwrap, its parent, sees it end. Without
// it (bwrap's own init as pid 1) the init is orphaned when bwrap exits, reaped later by the host's
// init, and keeps the run's cgroup busy and a pid of it charged for up to ~2 s (measured).

import { SANDBOX_CTL_DIR, SANDBOX_RUNNER, SANDBOX_WORK_DIR } from './bwrap-args.js';

/** Test script location inside the work dir; excluded from artifact collection. */
export const SCRIPT_NAME = '.test-script';
export const STATUS_FILE = 'status';
/**
 * Descriptor (a socket to the driver) on which the sandbox says it has started: the first thing the
 * runner does is write a line to it and close it, before anything of the test runs. Unlike a marker
 * file in the control dir, what the test does afterwards cannot take it back or point it elsewhere.
 */
export const STARTED_FD = 4;
/** Exit code of a run whose services failed (like `docker run`'s 125: the test could not start). */
export const SERVICE_FAILURE_EXIT = 125;

export interface RunnerService {
  name: string;
  command: string;
  readyCheck?: string;
}

export interface RunnerInput {
  services: RunnerService[];
  /** Script starts with `#!`: exec it directly instead of via /bin/sh. */
  shebang: boolean;
  /** How long services may take to become ready, in ms. */
  readyBudgetMs: number;
  /** Poll interval of ready checks, in ms. */
  readyPollMs?: number;
}

/** Quotes a string for a POSIX shell. */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export function serviceLogName(index: number): string {
  return `service-${index}.log`;
}

/**
 * The files, beside the runner in the control dir, holding each service's command and ready check:
 * the runner runs `/bin/sh FILE`, so their text is on no command line (/proc/<pid>/cmdline of the
 * sandbox's processes is readable by every host user). Same fresh shell as `sh -c`, but for `$0`.
 */
export function serviceFiles(services: RunnerService[]): { name: string; text: string }[] {
  return services.flatMap((svc, i) => [
    { name: serviceCommandName(i), text: `${svc.command}\n` },
    ...(svc.readyCheck ? [{ name: readyCheckName(i), text: `${svc.readyCheck}\n` }] : []),
  ]);
}

function serviceCommandName(index: number): string {
  return `service-${index}.sh`;
}

function readyCheckName(index: number): string {
  return `ready-${index}.sh`;
}

/**
 * getrusage's number on this architecture (the sandbox runs the host's), for perl's `syscall`; 0: the
 * runner does not report usage. struct rusage is 18 longs on every 64-bit Linux.
 */
const GETRUSAGE_NR = ({ x64: 98, arm64: 165, riscv64: 165 } as Record<string, number>)[process.arch] ?? 0;

// `$out` empty: no status file (the services runner's outer perl, which only reaps as pid 1).
const PERL_WAIT = [
  'my $out = shift @ARGV; my $started = shift @ARGV;',
  'if ($started ne "" && open(my $m, ">&=", $started)) { print $m "started\\n"; close $m; }',
  '$SIG{$_} = "DEFAULT" for qw(PIPE INT QUIT TERM HUP);',
  'my $pid = fork();',
  'if (!defined $pid) { print STDERR "[orchestrator] fork failed: $!\\n"; $pid = -1; }',
  'if ($pid == 0) { exec { $ARGV[0] } @ARGV; print STDERR "[orchestrator] cannot execute $ARGV[0]: $!\\n"; exit 127; }',
  'my $s = 126 << 8;',
  // as pid 1: every orphan is ours to reap (or it stays a zombie, counted in the pids limit)
  'my $any = $$ == 1 ? -1 : $pid;',
  'if ($pid > 0) { while (1) { my $w = waitpid($any, 0); if ($w == $pid) { $s = $?; last; } last if $w == -1 && !$!{EINTR}; } }',
  'my $line = ($s & 127) ? "signal " . ($s & 127) : "exit " . ($s >> 8);',
  // what the script and the processes it waited for used: getrusage(RUSAGE_CHILDREN), see RunnerUsage
  'my $ru = "\\0" x 144; my $u = "";',
  `if (${GETRUSAGE_NR} > 0 && syscall(${GETRUSAGE_NR}, -1, $ru) == 0) { my @r = unpack("l!18", $ru); $u = "usage " . join(" ", $r[0] * 1000000 + $r[1], $r[2] * 1000000 + $r[3], @r[4, 11, 12, 16, 17]) . "\\n"; }`,
  'if ($out ne "" && open(my $f, ">", "$out.tmp")) { print $f "$line\\n$u"; close $f; rename "$out.tmp", $out; }',
  'exit(($s & 127) ? 128 + ($s & 127) : $s >> 8);',
].join(' ');

export function buildRunnerScript(input: RunnerInput): string {
  const ctl = SANDBOX_CTL_DIR;
  const script = `${SANDBOX_WORK_DIR}/${SCRIPT_NAME}`;
  const poll = ((input.readyPollMs ?? 100) / 1000).toFixed(3);
  const lines: string[] = [
    '# generated by the container driver; runs inside the sandbox',
    `ctl=${ctl}`,
    `{ echo started >&${STARTED_FD}; } 2>/dev/null; exec ${STARTED_FD}>&-`,
    'ulimit -c unlimited 2>/dev/null || ulimit -c "$(ulimit -H -c)" 2>/dev/null',
    `cd ${SANDBOX_WORK_DIR} || exit 125`,
    'now_ms() { t=$(date +%s%N 2>/dev/null); case "$t" in *N|"") echo 0 ;; *) echo $((t / 1000000)) ;; esac; }',
    'fail_service() {',
    '  printf "[orchestrator] %s\\n" "$1" >&2',
    `  echo "exit ${SERVICE_FAILURE_EXIT}" > "$ctl/${STATUS_FILE}"`,
    `  exit ${SERVICE_FAILURE_EXIT}`,
    '}',
  ];
  if (input.services.length > 0) {
    lines.push(`ready_deadline=$(( $(now_ms) + ${Math.max(0, Math.floor(input.readyBudgetMs))} ))`);
  }
  input.services.forEach((svc, i) => {
    lines.push(
      `# service ${i}: ${svc.name.replace(/[\r\n]/g, ' ')}`,
      `/bin/sh "$ctl/${serviceCommandName(i)}" </dev/null >"$ctl/${serviceLogName(i)}" 2>&1 &`,
      `svc_pid_${i}=$!`,
    );
  });
  input.services.forEach((svc, i) => {
    if (!svc.readyCheck) return;
    lines.push(
      `svc_exited=""`,
      `until /bin/sh "$ctl/${readyCheckName(i)}" </dev/null >/dev/null 2>&1; do`,
      // A service that exits 0 may have daemonized: keep polling. A non-zero exit is final.
      `  if [ -z "$svc_exited" ] && ! kill -0 "$svc_pid_${i}" 2>/dev/null; then`,
      `    wait "$svc_pid_${i}"; st=$?; svc_exited=1`,
      `    [ "$st" -ne 0 ] && fail_service "service \\"${svc.name}\\" exited with status $st before it was ready (log: ${ctl}/${serviceLogName(i)})"`,
      '  fi',
      `  [ "$(now_ms)" -ge "$ready_deadline" ] && fail_service "service \\"${svc.name}\\" not ready within ${input.readyBudgetMs} ms (readyCheck: "${shQuote(svc.readyCheck)}")"`,
      `  sleep ${poll}`,
      'done',
    );
  });
  const cmd = input.shebang ? shQuote(script) : `/bin/sh ${shQuote(script)}`;
  lines.push(
    `if [ -x ${SANDBOX_RUNNER} ]; then`,
    `  exec ${SANDBOX_RUNNER} "$ctl/${STATUS_FILE}" '' ${cmd}`,
    'fi',
    'if [ -x /usr/bin/perl ]; then',
    `  exec /usr/bin/perl -e ${shQuote(PERL_WAIT)} -- "$ctl/${STATUS_FILE}" '' ${cmd}`,
    'fi',
    `${cmd}`,
    'st=$?',
    `echo "exit-ambiguous $st" > "$ctl/${STATUS_FILE}"`,
    'exit $st',
    '',
  );
  return lines.join('\n');
}

/**
 * The sandbox command of a run without services with the native runner (`native`) or, when the image
 * has /usr/bin/perl, perl: it says it has started (on STARTED_FD, which it then closes), runs the script
 * and records its wait status; no runner shell in between (~3 ms less). Core dumps are then enabled by
 * the caller (rlimits are inherited through bwrap). Run as pid 1 (bwrap --as-pid-1).
 */
export function buildDirectCommand(shebang: boolean, native = false): string[] {
  const script = `${SANDBOX_WORK_DIR}/${SCRIPT_NAME}`;
  return [
    ...(native ? [SANDBOX_RUNNER] : ['/usr/bin/perl', '-e', PERL_WAIT, '--']),
    `${SANDBOX_CTL_DIR}/${STATUS_FILE}`,
    String(STARTED_FD),
    ...(shebang ? [script] : ['/bin/sh', script]),
  ];
}

/**
 * The sandbox command of a run with services with the native runner or, when the image has
 * /usr/bin/perl, perl: as pid 1 (bwrap --as-pid-1), reaping orphans, it runs the runner shell (which
 * writes the status through a runner of its own).
 */
export function buildReapedRunnerCommand(native = false): string[] {
  return [...(native ? [SANDBOX_RUNNER] : ['/usr/bin/perl', '-e', PERL_WAIT, '--']), '', '', '/bin/sh', `${SANDBOX_CTL_DIR}/runner.sh`];
}

/** What the status file says. */
export type RunnerStatus =
  | { kind: 'exit'; code: number }
  | { kind: 'signal'; signal: number }
  | { kind: 'ambiguous'; code: number };

export function parseRunnerStatus(text: string): RunnerStatus | null {
  const m = /^(exit|signal|exit-ambiguous) (\d+)\s*$/.exec(text.trim().split('\n')[0]);
  if (!m) return null;
  const n = Number(m[2]);
  if (m[1] === 'exit') return { kind: 'exit', code: n };
  if (m[1] === 'signal') return { kind: 'signal', signal: n };
  return { kind: 'ambiguous', code: n };
}

/**
 * What the script and the processes it waited for used, as the runner's perl read it with
 * getrusage(RUSAGE_CHILDREN) after the script ended: CPU in µs, peak RSS of the largest one in KiB,
 * blocks of 512 bytes the storage layer read and wrote for them (Linux counts a write when a page is
 * dirtied, not when it reaches the disk), voluntary and involuntary context switches. Processes the
 * script left running are not in it; orphans that ended before it are (the runner, pid 1, reaps them).
 */
export interface RunnerUsage {
  userUs: number;
  systemUs: number;
  maxRssKb: number;
  inBlocks: number;
  outBlocks: number;
  voluntarySwitches: number;
  involuntarySwitches: number;
}

/** The `usage …` line of the status file; null when absent or not well formed (the sandbox user owns the file). */
export function parseRunnerUsage(text: string): RunnerUsage | null {
  const line = text.split('\n').find((l) => l.startsWith('usage '));
  const m = line ? /^usage (\d{1,18}) (\d{1,18}) (\d{1,18}) (\d{1,18}) (\d{1,18}) (\d{1,18}) (\d{1,18})\s*$/.exec(line) : null;
  if (!m) return null;
  const [userUs, systemUs, maxRssKb, inBlocks, outBlocks, voluntarySwitches, involuntarySwitches] = m.slice(1).map(Number);
  return { userUs, systemUs, maxRssKb, inBlocks, outBlocks, voluntarySwitches, involuntarySwitches };
}
