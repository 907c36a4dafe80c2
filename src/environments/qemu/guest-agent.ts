// What runs inside a QEMU VM: the initramfs' /init (busybox sh) and the agent it becomes. Pure: text.
//
// Boot: /init loads the virtio, 9p, ext4 and overlay modules (in MODULES' order), mounts the image's
// disk read-only (/ro: the host gives it as a read-only drive, so the base image is never written),
// the host's job dir (9p tag `job`: a run's inputs, its control files, and what it returns) and
// cgroup v2, then execs the agent as pid 1. When the agent dies the kernel panics and QEMU exits
// (panic=-1, -no-reboot): the host sees the VM gone.
//
// The agent talks to the host on one virtio-serial port (`orch.ctl`), one line per message:
//   host → guest   HELLO                  answered READY (the host repeats it until the VM answers)
//                  RESET <n>              kill what runs, a fresh root; answered RESET-OK <n>
//                  RUN <n>                run /job/ctl/start.sh chrooted in the root; answered STARTED <n>
//                                         then DONE <n> once every process of the run is gone
//                  KILL <n>               kill run <n>'s processes (timeout, abort)
//                  EXEC <n>               run /job/inspect.sh outside the run (tests' hooks); DONE <n>
// A test's root is an overlay of /ro with a tmpfs upper layer, thrown away by RESET while the kernel
// stays up: the reset of a warm VM without a cold boot. /work and /run/orchestrator are in the guest
// (copied in from /job/in and /job/ctl, given back to /job/out after the run): QEMU's 9p server stops
// the whole device when the guest opens a FIFO on it, so nothing of the test lives on 9p. stdout and
// stderr go to files on 9p (the host reads them as they grow: live chunks, byte-exact); the run is pid
// 1 of its own pid namespace (its end kills what it left) in a cgroup (memory below the VM's, pids)
// that kills every process of the run and gives CPU time, peak memory and OOM kills.

/** The kernel modules the initramfs loads, in this order (PROBES.md), then overlay. */
export const MODULES = [
  'virtio_ring', 'virtio_pci_modern_dev', 'virtio_pci_legacy_dev', 'virtio', 'virtio_pci', 'virtio_mmio',
  'virtio_blk', '9pnet', '9pnet_virtio', 'netfs', 'fscache', '9p', 'virtio_console', 'crc32c_generic',
  'jbd2', 'mbcache', 'crc16', 'ext4', 'overlay',
];

/** Name of the agent's virtio-serial port. */
export const AGENT_PORT = 'orch.ctl';
/** 9p mount tag of the job dir. */
export const JOB_TAG = 'job';
/** Where the agent says its run's figures: `key value` lines (stats), beside stdout and stderr. */
export const OUT_FILES = { stdout: 'out/stdout', stderr: 'out/stderr', stats: 'out/stats', started: 'out/started' } as const;
/** Memory the guest keeps for itself (kernel, agent, page cache): the run's cgroup gets the rest. */
export const GUEST_RESERVED_MB = 96;

/** Bumped when the initramfs changes: part of the VM image's version. */
export const GUEST_FORMAT = 1;

export const INIT_SCRIPT = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /ro /job /m /rw /tmp
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() { echo "orch-init: $*" > /dev/ttyS0; sleep 1; poweroff -f; }
for m in $(cat /etc/orch-modules); do insmod /lib/modules/$m.ko 2>/dev/null || fail "insmod $m"; done
mount -t ext4 -o ro,noload /dev/vda /ro || fail "cannot mount the image disk"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=none ${JOB_TAG} /job || fail "cannot mount the job dir"
ip link set lo up
mkdir -p /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup || fail "no cgroup2"
echo "+memory +pids +cpu" > /sys/fs/cgroup/cgroup.subtree_control
port=
for p in /sys/class/virtio-ports/*; do [ "$(cat $p/name 2>/dev/null)" = ${AGENT_PORT} ] && port=/dev/\${p##*/}; done
[ -n "$port" ] || fail "no agent port"
exec /bin/sh /agent.sh "$port"
`;

export const AGENT_SCRIPT = `# the test-orchestrator agent (pid 1 of the VM)
exec 3<>"$1" </dev/null
echo -1000 > /proc/self/oom_score_adj
say() { echo "$*" >&3; }
kill_run() {
  for g in /sys/fs/cgroup/run*; do
    [ -d "$g" ] || continue
    echo 1 > $g/cgroup.kill 2>/dev/null
    i=0; while [ -s $g/cgroup.procs ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done
  done
}
fresh_root() {
  kill_run
  rmdir /sys/fs/cgroup/run* 2>/dev/null
  for d in /m/run/orchestrator /m/work /m/tmp /m/dev/shm /m/dev/pts /m/dev /m/sys /m/proc /m /rw; do umount -l $d 2>/dev/null; done
  mount -t tmpfs -o mode=755 tmpfs /rw && mkdir /rw/u /rw/w &&
  mount -t overlay overlay -o lowerdir=/ro,upperdir=/rw/u,workdir=/rw/w /m &&
  mkdir -p /m/proc /m/sys /m/dev /m/tmp /m/work /m/run/orchestrator && chmod 755 /m/work &&
  mount -t proc proc /m/proc && mount -t sysfs sysfs /m/sys &&
  mount -t tmpfs -o mode=755,size=64k tmpfs /m/dev &&
  mknod -m 666 /m/dev/null c 1 3 && mknod -m 666 /m/dev/zero c 1 5 && mknod -m 666 /m/dev/full c 1 7 &&
  mknod -m 666 /m/dev/random c 1 8 && mknod -m 666 /m/dev/urandom c 1 9 && mknod -m 666 /m/dev/tty c 5 0 &&
  ln -s /proc/self/fd /m/dev/fd && ln -s /proc/self/fd/0 /m/dev/stdin && ln -s /proc/self/fd/1 /m/dev/stdout && ln -s /proc/self/fd/2 /m/dev/stderr &&
  mkdir /m/dev/pts /m/dev/shm && mount -t devpts -o newinstance,ptmxmode=666 devpts /m/dev/pts && ln -s pts/ptmx /m/dev/ptmx &&
  mount -t tmpfs -o mode=1777 tmpfs /m/dev/shm && mount -t tmpfs -o mode=1777 tmpfs /m/tmp &&
  mount -t tmpfs -o mode=755,size=64m tmpfs /m/run/orchestrator
}
# what the run leaves for the host: the control dir's regular files, and the work dir's paths the
# artifact patterns can match (/job/ctl/collect, one a line), copied as they are (links as links)
give_back() {
  mkdir -p /job/out/ctl /job/out/work
  for f in /m/run/orchestrator/*; do [ -f "$f" ] && [ ! -L "$f" ] && cp "$f" /job/out/ctl/; done
  set --
  while IFS= read -r p; do [ -e "/m/work/$p" ] || [ -L "/m/work/$p" ] && set -- "$@" "$p"; done < /job/ctl/collect
  [ $# -gt 0 ] && (cd /m/work && tar -cf - "$@" 2>/dev/null) | (cd /job/out/work && tar -xf - 2>/dev/null)
  return 0
}
run_test() {
  n=$1; cg=/sys/fs/cgroup/run$n
  mkdir -p $cg /job/out
  cp -a /job/in/. /m/work/ && cp /job/ctl/* /m/run/orchestrator/ || { say "FAILED $n"; return; }
  read mem pids < /job/ctl/limits
  echo $mem > $cg/memory.max && echo $pids > $cg/pids.max || { say "FAILED $n"; return; }
  echo 0 > $cg/memory.swap.max 2>/dev/null
  say "STARTED $n"
  /bin/sh -c 'echo $$ > '$cg'/cgroup.procs && exec unshare -p -f --mount-proc=/m/proc env -i chroot /m /bin/sh /run/orchestrator/start.sh' </dev/null >/job/${OUT_FILES.stdout} 2>/job/${OUT_FILES.stderr} 4>/job/${OUT_FILES.started}
  rc=$?
  echo 1 > $cg/cgroup.kill 2>/dev/null
  i=0; while [ -s $cg/cgroup.procs ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done
  {
    echo "rc $rc"
    echo "user_usec $(sed -n 's/^user_usec //p' $cg/cpu.stat)"
    echo "system_usec $(sed -n 's/^system_usec //p' $cg/cpu.stat)"
    echo "oom_kill $(sed -n 's/^oom_kill //p' $cg/memory.events)"
    echo "pids_max $(sed -n 's/^max //p' $cg/pids.events)"
    echo "cpu_usec $(sed -n 's/^usage_usec //p' $cg/cpu.stat)"
    echo "peak_bytes $(cat $cg/memory.peak 2>/dev/null)"
    echo "memory_max $(cat $cg/memory.max)"
  } > /job/${OUT_FILES.stats}.tmp && mv /job/${OUT_FILES.stats}.tmp /job/${OUT_FILES.stats}
  rmdir $cg 2>/dev/null
  give_back
  say "DONE $n"
}
fresh_root || { echo "orch-agent: cannot make the test root" > /dev/ttyS0; poweroff -f; }
say READY
while read -r cmd n <&3; do
  case "$cmd" in
    HELLO) say READY ;;
    RESET) fresh_root && say "RESET-OK $n" || say "RESET-FAILED $n" ;;
    RUN) run_test "$n" & ;;
    KILL) echo 1 > /sys/fs/cgroup/run$n/cgroup.kill 2>/dev/null ;;
    EXEC) /bin/sh /job/inspect.sh > /job/inspect.out 2>&1; say "DONE $n" ;;
  esac
done
echo "orch-agent: the host closed the agent port" > /dev/ttyS0
poweroff -f
`;
