// The host command that starts one sandbox: a small sh wrapper that closes inherited descriptors,
// joins the run's cgroup and then execs (setpriv and) bwrap, so that every descendant of bwrap starts
// inside the group: there is no window where the script could fork outside it.

import { inheritableFds } from '../../infra/inherited-fds';
import { STARTED_FD } from './runner-script';

/**
 * Where bwrap reads the test's environment (`--args ENV_FD`): the wrapper's stdin is a socket on which
 * the driver writes it; the wrapper moves it here and gives the sandbox /dev/null as stdin. bwrap
 * closes it once read: the sandbox never sees it.
 */
export const ENV_FD = 5;

/** The descriptor the seccomp program is passed on (bwrap `--seccomp 3`). */
export const SECCOMP_FD = 3;

/**
 * sh program that closes the descriptors it was told of, moves its stdin (the environment) to
 * ENV_FD, sets its audit login uid when told to, joins the cgroup (its own pid, so bwrap and all it
 * forks are inside), then execs. Arguments: the count of descriptors to close, them, the login uid
 * or `-`, the count of cgroup.procs files, them, the command.
 */
const JOIN_AND_EXEC = [
  // Descriptors this process inherited without O_CLOEXEC would reach the sandbox through bwrap.
  'n=$1; shift',
  'while [ "$n" -gt 0 ]; do eval "exec $1>&-"; shift; n=$((n - 1)); done',
  `exec ${ENV_FD}<&0 0</dev/null`,
  // The audit login uid marks every audit record of the run's processes (security-audit.ts); only
  // a process with CAP_AUDIT_CONTROL (this root wrapper, not the sandbox) can set it. A failure
  // shows in the security audit (no record confirms its filter), not here.
  'l=$1; shift',
  '[ "$l" = - ] || { echo "$l" > /proc/self/loginuid; } 2>/dev/null',
  // Core dumps on (core_pattern `core` writes them to the crashing process's cwd); rlimits pass
  // through bwrap. The hard limit may be lower when the host lacks CAP_SYS_RESOURCE.
  'ulimit -c unlimited 2>/dev/null || ulimit -c "$(ulimit -H -c)" 2>/dev/null',
  'n=$1; shift',
  'while [ "$n" -gt 0 ]; do',
  '  echo $$ > "$1" || { echo "[orchestrator] cannot join cgroup ($1)" >&2; exit 125; }',
  '  shift; n=$((n - 1))',
  'done',
  'exec "$@"',
].join('\n');

export interface SandboxCommand {
  command: string;
  args: string[];
  stdio: ('ignore' | 'pipe' | number)[];
}

/**
 * The wrapper's command line. The child gets 0 (the environment, moved to ENV_FD by the wrapper),
 * 1-2, the seccomp program (SECCOMP_FD) and the start socket (STARTED_FD); whatever else this process
 * would pass on (descriptors it inherited without O_CLOEXEC) the wrapper closes.
 */
export function sandboxCommand(input: {
  seccompFd?: number;
  procsFiles: string[];
  /** Audit login uid of the run's processes (security audit); unset: left as inherited. */
  loginuid?: number;
  exec: string[];
}): SandboxCommand {
  if (input.loginuid !== undefined && !(Number.isInteger(input.loginuid) && input.loginuid >= 0 && input.loginuid < 2 ** 32 - 1)) {
    throw new Error(`container driver: invalid login uid ${input.loginuid}`);
  }
  const stdio: ('ignore' | 'pipe' | number)[] = ['pipe', 'pipe', 'pipe', input.seccompFd ?? 'ignore', 'pipe'];
  if (stdio.length !== STARTED_FD + 1) throw new Error('container driver: STARTED_FD must be the last stdio slot');
  if (stdio.length !== SECCOMP_FD + 2) throw new Error('container driver: SECCOMP_FD must be the slot before STARTED_FD');
  if (ENV_FD < stdio.length) throw new Error('container driver: ENV_FD must be above the stdio slots');
  const toClose = inheritableFds().filter((fd) => fd >= stdio.length || stdio[fd] === 'ignore');
  // dash redirects only single-digit descriptors: bash (Essential in Debian) closes the others.
  const command = toClose.some((fd) => fd > 9) ? '/bin/bash' : '/bin/sh';
  const args = [
    // bash sources ~/.bashrc when its stdin is a socket (as under rshd), which the environment's is
    ...(command === '/bin/bash' ? ['--norc', '--noprofile'] : []),
    '-c', JOIN_AND_EXEC, 'join',
    String(toClose.length), ...toClose.map(String),
    input.loginuid === undefined ? '-' : String(input.loginuid),
    String(input.procsFiles.length), ...input.procsFiles,
    ...input.exec,
  ];
  return { command, args, stdio };
}
