// The bubblewrap command line of one sandboxed run. Pure: no I/O.
//
// Flags measured to give full isolation on these hosts (PROBES.md): a read-only bind of the image as
// `/`, fresh /proc, /dev and /tmp, every namespace unshared (mount, PID, IPC, UTS, network — loopback
// only —, cgroup, user), uid/gid 65534 inside, no capabilities, killed with its parent, a new
// session (no TIOCSTI into the orchestrator's terminal). bwrap sets no_new_privs itself.
//
// Hardened runs (SECURITY tests, `readOnly`): everything but /work is read-only. /tmp and /run are
// then empty read-only tmpfs, /dev is read-only (its devices work; /dev/shm takes no files, so POSIX
// shared memory and semaphores fail), and TMPDIR points at /work/.tmp (HARDENED_TMPDIR), which the
// driver makes: programs that honour TMPDIR (mktemp, Python's tempfile, Perl's File::Temp, compilers)
// work, one that writes to /tmp by name gets EROFS. The control dir (/run/orchestrator: the runner's
// status file, service logs) stays writable: the runner, with the test's uid, writes there.
//
// The test's environment never goes on a command line (/proc/<pid>/cmdline is readable by every
// local user): with `envFd` it is read by bwrap from that descriptor (`--args FD`, NUL-separated
// `--setenv NAME VALUE` triples, bwrapEnvData()); bwrap closes the descriptor once read.

import { WORK_DIR } from '../driver';

/** Where the per-run control directory (runner, status, service logs) appears inside the sandbox. */
export const SANDBOX_CTL_DIR = '/run/orchestrator';
/** Where the native runner (native-runner.ts) appears inside the sandbox, read-only. */
export const SANDBOX_RUNNER = '/run/orchestrator-runner';
/** The working directory inside the sandbox (the one every environment has). */
export const SANDBOX_WORK_DIR = WORK_DIR;
export const SANDBOX_UID = 65534;
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface BwrapArgsInput {
  rootfs: string;
  /** Host work dir, bound read-write at /work (the test's scratch space). */
  workDir: string;
  /** Host control dir, bound read-write at /run/orchestrator. */
  ctlDir: string;
  env: Record<string, string>;
  /**
   * Descriptor (in the bwrap process) bwrap reads the environment from: the caller writes
   * bwrapEnvData(env) to it and closes it. Unset: the environment goes on the command line, which is
   * only allowed for an empty `env` (the fixed defaults; the health check).
   */
  envFd?: number;
  /** Command run inside the sandbox. */
  command: string[];
  hostname?: string;
  /** Forbid new user namespaces inside (bwrap >= 0.8; the driver sets it for every run). */
  disableUserns?: boolean;
  /** fd (in the bwrap process) holding a seccomp BPF program. */
  seccompFd?: number;
  /** Size cap of the /tmp tmpfs in bytes (also counted in the memory cgroup). */
  tmpSizeBytes?: number;
  /** Hardened: /tmp, /run (but the control dir) and /dev read-only. */
  readOnly?: boolean;
  /**
   * The command is the PID namespace's pid 1 (bwrap `--as-pid-1`, no bwrap init): it must reap orphans.
   * bwrap then waits for it itself, so the namespace is gone when bwrap exits.
   */
  asPid1?: boolean;
  /** Host path of the native runner, bound read-only at SANDBOX_RUNNER (native-runner.ts). */
  runner?: string;
}

/** TMPDIR of a hardened run: /tmp is read-only there. Excluded from artifacts. */
export const HARDENED_TMPDIR_NAME = '.tmp';
export const HARDENED_TMPDIR = `${WORK_DIR}/${HARDENED_TMPDIR_NAME}`;

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** True when `name` can be passed as an environment variable name. */
export function isValidEnvName(name: string): boolean {
  return ENV_NAME.test(name);
}

/** The sandbox environment: a sane PATH and HOME, then the test's variables (which may override). */
export function sandboxEnv(testEnv: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = { PATH: DEFAULT_PATH, HOME: SANDBOX_WORK_DIR, TMPDIR: '/tmp', LANG: 'C.UTF-8' };
  for (const [k, v] of Object.entries(testEnv)) {
    if (!isValidEnvName(k) || v.includes('\0')) continue;
    env[k] = v;
  }
  return env;
}

/** What bwrap reads with `--args FD`: `--setenv NAME VALUE` for each sandbox variable, NUL-separated. */
export function bwrapEnvData(testEnv: Record<string, string>): Buffer {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(sandboxEnv(testEnv))) parts.push('--setenv', k, v);
  return Buffer.from(parts.map((p) => `${p}\0`).join(''), 'utf8');
}

export function buildBwrapArgs(input: BwrapArgsInput): string[] {
  const args: string[] = [
    '--ro-bind', input.rootfs, '/',
    '--proc', '/proc',
    '--dev', '/dev',
  ];
  if (input.tmpSizeBytes !== undefined) args.push('--size', String(input.tmpSizeBytes));
  args.push(
    '--tmpfs', '/tmp',
    '--tmpfs', '/run',
    '--bind', input.workDir, SANDBOX_WORK_DIR,
    '--bind', input.ctlDir, SANDBOX_CTL_DIR,
  );
  if (input.runner) args.push('--ro-bind', input.runner, SANDBOX_RUNNER);
  args.push('--chdir', SANDBOX_WORK_DIR);
  // After the binds below them (a remount is of that one mount, not of those below).
  if (input.readOnly) args.push('--remount-ro', '/tmp', '--remount-ro', '/run', '--remount-ro', '/dev');
  args.push(
    '--unshare-all',
    '--unshare-user',
    '--uid', String(SANDBOX_UID),
    '--gid', String(SANDBOX_UID),
    '--hostname', input.hostname ?? 'sandbox',
    '--cap-drop', 'ALL',
    '--die-with-parent',
    '--new-session',
    '--clearenv',
  );
  if (input.disableUserns) args.push('--disable-userns');
  if (input.asPid1) args.push('--as-pid-1');
  if (input.seccompFd !== undefined) args.push('--seccomp', String(input.seccompFd));
  if (input.envFd !== undefined) {
    args.push('--args', String(input.envFd));
  } else {
    if (Object.keys(input.env).length > 0) throw new Error('buildBwrapArgs: a test environment needs envFd (never on the command line)');
    for (const [k, v] of Object.entries(sandboxEnv({}))) args.push('--setenv', k, v);
  }
  args.push('--', ...input.command);
  return args;
}
