// The seccomp BPF programs of sandboxed runs, handed to bwrap with `--seccomp FD` (bwrap loads it
// after its own setup, just before it executes the sandbox's command).
//
// Two profiles, in the spirit of Docker's default profile (moby/profiles seccomp/default.json: what a
// container without capabilities may call):
//
// - `baseline`, for every test: system calls that reach kernel attack surface or host state a test
//   never needs fail with EPERM (not a kill, so a program that probes for them carries on): new
//   namespaces (clone and unshare with a CLONE_NEW* flag, setns), the mount API, ptrace and the other
//   ways into another process's memory, kexec, kernel modules, BPF, perf, keyrings, io_uring,
//   userfaultfd, file handles, swap, reboot, … clone3 fails with ENOSYS, as in Docker: its flags are
//   in memory a filter cannot read, and glibc then falls back to clone (whose flags are checked).
//   personality() is allowed only with the values Docker allows (Linux, 32-bit, UNAME26, a query).
// - `strict`, for SECURITY tests: the baseline, plus unshare with any flag, NUMA page migration and
//   memory policies, and fanotify.
//
// Calls of the x32 ABI and of any other architecture than the table's kill the process (SIGSYS),
// since their numbers would bypass the table. Only x86_64 has a table: elsewhere buildSeccompFilter
// returns null and the driver runs with `--disable-userns` and no capabilities only (logged).
//
// Encoding: struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; } in host byte order.

const BPF_LD_W_ABS = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_JEQ_K = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_JGE_K = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const BPF_JSET_K = 0x45; // BPF_JMP | BPF_JSET | BPF_K
const BPF_RET_K = 0x06; // BPF_RET | BPF_K

const SECCOMP_RET_KILL_PROCESS = 0x80000000;
const SECCOMP_RET_ERRNO = 0x00050000;
const SECCOMP_RET_ALLOW = 0x7fff0000;
const EPERM = 1;
const ENOSYS = 38;

const AUDIT_ARCH_X86_64 = 0xc000003e;
const X32_SYSCALL_BIT = 0x40000000;

/** seccomp_data: int nr at offset 0, u32 arch at offset 4, u64 args[6] from offset 16 (low word first on x86_64). */
const OFFSET_NR = 0;
const OFFSET_ARCH = 4;
const OFFSET_ARG0_LOW = 16;

/** CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET. */
export const CLONE_NAMESPACE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000;
/** unshare() also takes CLONE_NEWTIME (0x80; in clone()'s flags that byte is the exit signal). */
const UNSHARE_NAMESPACE_FLAGS = CLONE_NAMESPACE_FLAGS | 0x00000080;

/** personality() values allowed (Docker's list): PER_LINUX, PER_LINUX32, UNAME26, PER_LINUX32|UNAME26, query. */
const ALLOWED_PERSONALITIES = [0x0, 0x8, 0x20000, 0x20008, 0xffffffff];

export type SeccompProfile = 'baseline' | 'strict';

/** Denied for every test (EPERM), with their x86_64 numbers (asm/unistd_64.h). */
export const BASELINE_DENIED_X86_64: Readonly<Record<string, number>> = {
  // other processes' memory
  ptrace: 101,
  process_vm_readv: 310,
  process_vm_writev: 311,
  kcmp: 312,
  pidfd_getfd: 438,
  // namespaces (clone and unshare: by flag, below)
  setns: 308,
  // the mount API
  pivot_root: 155,
  mount: 165,
  umount2: 166,
  open_tree: 428,
  move_mount: 429,
  fsopen: 430,
  fsconfig: 431,
  fsmount: 432,
  fspick: 433,
  mount_setattr: 442,
  // the kernel itself
  syslog: 103,
  uselib: 134,
  vhangup: 153,
  _sysctl: 156,
  acct: 163,
  swapon: 167,
  swapoff: 168,
  reboot: 169,
  sethostname: 170,
  setdomainname: 171,
  iopl: 172,
  ioperm: 173,
  create_module: 174,
  init_module: 175,
  delete_module: 176,
  get_kernel_syms: 177,
  query_module: 178,
  quotactl: 179,
  nfsservctl: 180,
  lookup_dcookie: 212,
  kexec_load: 246,
  kexec_file_load: 320,
  finit_module: 313,
  bpf: 321,
  perf_event_open: 298,
  // keyrings
  add_key: 248,
  request_key: 249,
  keyctl: 250,
  // attack surface
  userfaultfd: 323,
  io_uring_setup: 425,
  io_uring_enter: 426,
  io_uring_register: 427,
  name_to_handle_at: 303,
  open_by_handle_at: 304,
};

/** Also denied for SECURITY tests. */
export const STRICT_EXTRA_DENIED_X86_64: Readonly<Record<string, number>> = {
  unshare: 272, // any flag, even CLONE_FS or CLONE_FILES
  mbind: 237,
  set_mempolicy: 238,
  migrate_pages: 256,
  move_pages: 279,
  fanotify_init: 300,
};

const NR_CLONE = 56;
const NR_UNSHARE = 272;
const NR_PERSONALITY = 135;
const NR_CLONE3 = 435;

/** Every system call a profile denies outright (for tests and documentation). */
export function deniedSyscalls(profile: SeccompProfile): Record<string, number> {
  return profile === 'strict' ? { ...BASELINE_DENIED_X86_64, ...STRICT_EXTRA_DENIED_X86_64 } : { ...BASELINE_DENIED_X86_64 };
}

// A tiny assembler: jumps name a label; offsets are resolved at the end (forward only, at most 255).
type Target = string;
type Line =
  | { op: 'ld'; offset: number }
  | { op: 'jeq' | 'jge' | 'jset'; k: number; jt: Target | null; jf: Target | null }
  | { op: 'ret'; k: number }
  | { op: 'label'; name: string };

function assemble(lines: Line[]): Buffer {
  const labels = new Map<string, number>();
  const insns: Exclude<Line, { op: 'label' }>[] = [];
  for (const line of lines) {
    if (line.op === 'label') labels.set(line.name, insns.length);
    else insns.push(line);
  }
  const buf = Buffer.alloc(insns.length * 8);
  const le = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  insns.forEach((ins, i) => {
    let code: number;
    let jt = 0;
    let jf = 0;
    let k: number;
    const rel = (t: Target | null): number => {
      if (t === null) return 0;
      const at = labels.get(t);
      if (at === undefined) throw new Error(`seccomp: no label ${t}`);
      const off = at - (i + 1);
      if (off < 0 || off > 255) throw new Error(`seccomp: jump to ${t} out of range (${off})`);
      return off;
    };
    if (ins.op === 'ld') {
      code = BPF_LD_W_ABS;
      k = ins.offset;
    } else if (ins.op === 'ret') {
      code = BPF_RET_K;
      k = ins.k;
    } else {
      code = ins.op === 'jeq' ? BPF_JEQ_K : ins.op === 'jge' ? BPF_JGE_K : BPF_JSET_K;
      k = ins.k;
      jt = rel(ins.jt);
      jf = rel(ins.jf);
    }
    const o = i * 8;
    if (le) {
      buf.writeUInt16LE(code, o);
      buf.writeUInt32LE(k >>> 0, o + 4);
    } else {
      buf.writeUInt16BE(code, o);
      buf.writeUInt32BE(k >>> 0, o + 4);
    }
    buf.writeUInt8(jt, o + 2);
    buf.writeUInt8(jf, o + 3);
  });
  return buf;
}

/**
 * The filter of `profile` for `arch` (Node's process.arch), or null when there is no table for it.
 * `forAudit`: the copy a SECURITY run loads again inside its sandbox with SECCOMP_FILTER_FLAG_LOG
 * (security-audit.ts), so that the kernel audits each denial. Its rules are the same but for clone3,
 * which it allows: glibc tries clone3 on every fork, and its ENOSYS (answered by the first filter,
 * which logs nothing) is no denial worth an audit record.
 */
export function buildSeccompFilter(profile: SeccompProfile = 'baseline', arch: string = process.arch, options: { forAudit?: boolean } = {}): Buffer | null {
  if (arch !== 'x64') return null;
  const denied = [...new Set(Object.values(deniedSyscalls(profile)))].sort((a, b) => a - b);
  const lines: Line[] = [
    { op: 'ld', offset: OFFSET_ARCH },
    { op: 'jeq', k: AUDIT_ARCH_X86_64, jt: null, jf: 'kill' },
    { op: 'ld', offset: OFFSET_NR },
    { op: 'jge', k: X32_SYSCALL_BIT, jt: 'kill', jf: null },
    ...denied.map((nr): Line => ({ op: 'jeq', k: nr, jt: 'eperm', jf: null })),
    { op: 'jeq', k: NR_CLONE, jt: 'clone-flags', jf: null },
    ...(denied.includes(NR_UNSHARE) ? [] : [{ op: 'jeq', k: NR_UNSHARE, jt: 'unshare-flags', jf: null } as Line]),
    { op: 'jeq', k: NR_CLONE3, jt: options.forAudit ? 'allow' : 'enosys', jf: null },
    { op: 'jeq', k: NR_PERSONALITY, jt: 'personality', jf: null },
    { op: 'ret', k: SECCOMP_RET_ALLOW },
    // clone(flags, …), unshare(flags): no new namespace
    { op: 'label', name: 'clone-flags' },
    { op: 'ld', offset: OFFSET_ARG0_LOW },
    { op: 'jset', k: CLONE_NAMESPACE_FLAGS, jt: 'eperm', jf: 'allow' },
    { op: 'label', name: 'unshare-flags' },
    { op: 'ld', offset: OFFSET_ARG0_LOW },
    { op: 'jset', k: UNSHARE_NAMESPACE_FLAGS, jt: 'eperm', jf: 'allow' },
    // personality(persona): an unsigned int, the low word
    { op: 'label', name: 'personality' },
    { op: 'ld', offset: OFFSET_ARG0_LOW },
    ...ALLOWED_PERSONALITIES.map((p): Line => ({ op: 'jeq', k: p, jt: 'allow', jf: null })),
    { op: 'label', name: 'eperm' },
    { op: 'ret', k: SECCOMP_RET_ERRNO | EPERM },
    { op: 'label', name: 'allow' },
    { op: 'ret', k: SECCOMP_RET_ALLOW },
    { op: 'label', name: 'enosys' },
    { op: 'ret', k: SECCOMP_RET_ERRNO | ENOSYS },
    { op: 'label', name: 'kill' },
    { op: 'ret', k: SECCOMP_RET_KILL_PROCESS },
  ];
  return assemble(lines);
}
