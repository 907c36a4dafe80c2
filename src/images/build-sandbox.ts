// The BUILD sandbox: where packages are installed and setup scripts run, as root, on the new root
// filesystem read-write. It is not a test sandbox: it has the host's network (apt must reach the
// mirror; only while building, and only here) with the host's /etc/resolv.conf, its own PID, IPC and
// UTS namespaces, fresh /proc, /dev and /tmp, and Docker's default capability set (no CAP_SYS_ADMIN,
// no module loading, no raw I/O, no ptrace); no_new_privs as every bwrap. Nothing else of the host is
// mounted. Used only for images the operator defines: it is what `setup` and the packages run in.

import path from 'node:path';
import { ImageBuildError, runStep, type ToolResult } from './tool';

/** Docker's default capabilities: what apt, dpkg and the maintainer scripts of packages need. */
export const BUILD_CAPABILITIES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID', 'CAP_SETUID',
  'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];

export const BUILD_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** Where the setup script appears in the build sandbox (on its /tmp tmpfs). */
export const SETUP_PATH = '/tmp/.image-setup.sh';

export interface BuildSandboxInput {
  rootfs: string;
  command: string[];
  /** Host file bound read-only at SETUP_PATH. */
  setupFile?: string;
  /** Variables inside, over PATH, HOME, LANG, DEBIAN_FRONTEND. */
  env?: Record<string, string>;
  resolvConf?: string;
}

export function buildSandboxArgs(input: BuildSandboxInput): string[] {
  const args = [
    '--bind', input.rootfs, '/',
    '--proc', '/proc',
    '--dev', '/dev',
    '--perms', '1777', '--tmpfs', '/tmp', // apt runs gpgv as _apt, which writes its temp files there
    '--ro-bind', input.resolvConf ?? '/etc/resolv.conf', '/etc/resolv.conf',
  ];
  if (input.setupFile) args.push('--ro-bind', input.setupFile, SETUP_PATH);
  args.push(
    '--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup-try',
    '--hostname', 'image-build',
    '--die-with-parent', '--new-session',
    '--cap-drop', 'ALL',
    ...BUILD_CAPABILITIES.flatMap((c) => ['--cap-add', c]),
    '--chdir', '/',
    '--clearenv',
  );
  const env = { PATH: BUILD_PATH, HOME: '/root', LANG: 'C.UTF-8', DEBIAN_FRONTEND: 'noninteractive', ...(input.env ?? {}) };
  for (const [k, v] of Object.entries(env)) args.push('--setenv', k, v);
  args.push('--', ...input.command);
  return args;
}

/** apt-get's lines worth a log line; the rest ("Get:", "Unpacking", "Setting up") are one per package. */
export function aptLineMatters(line: string): boolean {
  return /^(E:|W:|Err:|N: |Reading package lists\.\.\. Done$|\d+ upgraded, |Need to get |After this operation|Fetched )/.test(line);
}

/**
 * The packages step's script: apt-get update, then install without recommends; services never
 * started (policy-rc.d), apt's lists and caches removed afterwards. Names are checked by the
 * configuration ([a-z0-9][a-z0-9+.-]*), so they cannot be options or shell.
 */
export function packagesScript(packages: readonly string[]): string {
  for (const p of packages) if (!/^[a-z0-9][a-z0-9+.-]*$/.test(p)) throw new Error(`invalid package name "${p}"`);
  return [
    'set -e',
    'had_policy=; if [ -e /usr/sbin/policy-rc.d ] || [ -L /usr/sbin/policy-rc.d ]; then mv /usr/sbin/policy-rc.d /usr/sbin/policy-rc.d.image-build; had_policy=1; fi',
    'mkdir -p /usr/sbin && printf "#!/bin/sh\\nexit 101\\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d',
    'restore() { rm -f /usr/sbin/policy-rc.d; if [ -n "$had_policy" ]; then mv /usr/sbin/policy-rc.d.image-build /usr/sbin/policy-rc.d; fi; }',
    'trap restore EXIT',
    'apt-get -q update',
    `apt-get -q install -y --no-install-recommends ${packages.join(' ')}`,
    'apt-get clean',
    'rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/* /var/log/apt/* /var/cache/debconf/*-old',
  ].join('\n');
}

/** Runs `command` in the build sandbox; a failure is an ImageBuildError of `step`. */
export async function runInBuildSandbox(
  image: string,
  step: string,
  input: BuildSandboxInput & { bwrap: string; hostEnv: Record<string, string>; signal?: AbortSignal; onLine?(line: string): void; label: string },
): Promise<ToolResult> {
  if (!path.isAbsolute(input.rootfs)) throw new ImageBuildError(image, step, `rootfs ${input.rootfs} is not absolute`);
  return runStep(image, step, {
    command: input.bwrap,
    args: buildSandboxArgs(input),
    env: input.hostEnv,
    signal: input.signal,
    onLine: input.onLine,
  }, input.label);
}
