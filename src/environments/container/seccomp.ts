// A seccomp BPF program for hardened (security test) runs, handed to bwrap with `--seccomp FD`.
//
// A deny list in the spirit of Docker's default profile: system calls that reach kernel attack
// surface or host state a test never needs (kernel modules, kexec, mount API, namespaces, ptrace,
// keyrings, BPF, perf, io_uring, userfaultfd, …) fail with EPERM. Calls of the x32 ABI and of any
// other architecture than the one the table is for kill the process, since their numbers would
// bypass the table. Only x86_64 has a table: elsewhere buildSeccompFilter returns null and the driver
// falls back to `--disable-userns` plus dropped capabilities (logged).
//
// Encoding: struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; } in host byte order.

const BPF_LD_W_ABS = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_JEQ_K = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_JGE_K = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const BPF_RET_K = 0x06; // BPF_RET | BPF_K

const SECCOMP_RET_KILL_PROCESS = 0x80000000;
const SECCOMP_RET_ERRNO = 0x00050000;
const SECCOMP_RET_ALLOW = 0x7fff0000;
const EPERM = 1;

const AUDIT_ARCH_X86_64 = 0xc000003e;
const X32_SYSCALL_BIT = 0x40000000;

/** seccomp_data: int nr at offset 0, u32 arch at offset 4. */
const OFFSET_NR = 0;
const OFFSET_ARCH = 4;

/** Denied system calls and their x86_64 numbers (asm/unistd_64.h). */
export const DENIED_SYSCALLS_X86_64: Readonly<Record<string, number>> = {
  ptrace: 101,
  syslog: 103,
  uselib: 134,
  vhangup: 153,
  pivot_root: 155,
  _sysctl: 156,
  acct: 163,
  mount: 165,
  umount2: 166,
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
  add_key: 248,
  request_key: 249,
  keyctl: 250,
  unshare: 272,
  move_pages: 279,
  perf_event_open: 298,
  fanotify_init: 300,
  name_to_handle_at: 303,
  open_by_handle_at: 304,
  setns: 308,
  process_vm_readv: 310,
  process_vm_writev: 311,
  kcmp: 312,
  finit_module: 313,
  kexec_file_load: 320,
  bpf: 321,
  userfaultfd: 323,
  io_uring_setup: 425,
  io_uring_enter: 426,
  io_uring_register: 427,
  open_tree: 428,
  move_mount: 429,
  fsopen: 430,
  fsconfig: 431,
  fsmount: 432,
  fspick: 433,
  pidfd_getfd: 438,
  mount_setattr: 442,
};

interface Insn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

function encode(program: Insn[]): Buffer {
  const buf = Buffer.alloc(program.length * 8);
  const le = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  program.forEach((ins, i) => {
    const o = i * 8;
    if (le) {
      buf.writeUInt16LE(ins.code, o);
      buf.writeUInt32LE(ins.k >>> 0, o + 4);
    } else {
      buf.writeUInt16BE(ins.code, o);
      buf.writeUInt32BE(ins.k >>> 0, o + 4);
    }
    buf.writeUInt8(ins.jt, o + 2);
    buf.writeUInt8(ins.jf, o + 3);
  });
  return buf;
}

/** The filter for `arch` (Node's process.arch), or null when there is no table for it. */
export function buildSeccompFilter(arch: string = process.arch): Buffer | null {
  if (arch !== 'x64') return null;
  const denied = [...new Set(Object.values(DENIED_SYSCALLS_X86_64))].sort((a, b) => a - b);
  const n = denied.length;
  if (n > 250) throw new Error('seccomp deny list too long for 8-bit jumps');
  const program: Insn[] = [
    { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: OFFSET_ARCH },
    { code: BPF_JEQ_K, jt: 1, jf: 0, k: AUDIT_ARCH_X86_64 },
    { code: BPF_RET_K, jt: 0, jf: 0, k: SECCOMP_RET_KILL_PROCESS },
    { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: OFFSET_NR },
    // x32 ABI numbers: deny outright (jump to the KILL below ALLOW).
    { code: BPF_JGE_K, jt: n + 2, jf: 0, k: X32_SYSCALL_BIT },
  ];
  // Block of n JEQs, then ALLOW, then ERRNO, then KILL.
  denied.forEach((nr, i) => program.push({ code: BPF_JEQ_K, jt: n - i, jf: 0, k: nr }));
  program.push({ code: BPF_RET_K, jt: 0, jf: 0, k: SECCOMP_RET_ALLOW });
  program.push({ code: BPF_RET_K, jt: 0, jf: 0, k: SECCOMP_RET_ERRNO | EPERM });
  program.push({ code: BPF_RET_K, jt: 0, jf: 0, k: SECCOMP_RET_KILL_PROCESS });
  return encode(program);
}
