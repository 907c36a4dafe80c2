// What every sandbox is denied (issue 6): a baseline seccomp filter and no user namespaces for every
// test, a stricter filter for SECURITY tests, no descriptor of the host's, a driver host without the
// orchestrator's secrets, a root side that follows no link the test made, private work dirs.
// Runs with umask 077, as the orchestrator does (main.ts).

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, openSync, closeSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ContainerDriver } from '../../src/environments/container/driver.js';
import { checkImage } from '../../src/environments/container/image.js';
import type { ContainerHandle } from '../../src/environments/container/env-state.js';
import { InfrastructureError, type EnvironmentDriver, type EnvironmentShape, type RunSpec } from '../../src/environments/driver.js';
import { RemoteDriver } from '../../src/environments/remote/remote.driver.js';
import { TEST_IMAGE, hostProcessesMatching, makeTempDir, silentLogger, testImageDir, type TempDir } from '../helpers/sandbox-env.js';

/**
 * Run as another unprivileged host user (neither root nor the sandbox user): reads a marker on stdin
 * (never on its command line), then every /proc/<pid>/cmdline and /proc/<pid>/environ it may read;
 * prints `readable N` and the files holding the marker.
 */
const OTHER_USER_SCAN = String.raw`
my $t = <STDIN>; chomp $t; die "no marker
" unless length $t; my $n = 0;
for my $p (glob "/proc/[0-9]*") { for my $f ("cmdline", "environ") {
  open(my $h, "<", "$p/$f") or next; local $/; my $d = <$h>; close $h; next unless defined $d; $n++;
  print "found $p/$f
" if index($d, $t) >= 0; } }
print "readable $n
";`;
const OTHER_UID = 4242;

function scanAsOtherUser(marker: string): { readable: number; found: string[] } {
  const r = spawnSync('/usr/bin/setpriv', [`--reuid=${OTHER_UID}`, `--regid=${OTHER_UID}`, '--clear-groups', '--', '/usr/bin/perl', '-e', OTHER_USER_SCAN], {
    input: `${marker}\n`,
    encoding: 'utf8',
    env: { PATH: '/usr/bin:/bin' },
  });
  assert.equal(r.status, 0, `scan as uid ${OTHER_UID}: ${r.stderr}`);
  return {
    readable: Number(/^readable (\d+)$/m.exec(r.stdout)?.[1] ?? 0),
    found: [...r.stdout.matchAll(/^found (\S+)$/gm)].map((m) => m[1]),
  };
}

function procComm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '(exited)';
  }
}

const shape: EnvironmentShape = { pool: 'hardening', kind: 'CONTAINER', arch: 'x86_64', cpus: 1, memoryMb: 128, image: TEST_IMAGE, pids: 64 };

/** Perl one-liners: each prints `name=ok` or `name=<errno>` (1 EPERM, 38 ENOSYS). perl-base is in minbase. */
const PROBE = String.raw`
p() { perl -e 'my ($name, $n, @a) = @ARGV; @a = map { 0 + $_ } @a; push @a, 0 while @a < 6;
  my $r = syscall(0 + $n, @a[0..5]); if ($r == 0 && $n == 56) { require POSIX; POSIX::_exit(0); }
  print "$name=", ($r == -1 ? ($!+0) : "ok"), "\n"; wait' "$@"; }
grep Seccomp: /proc/self/status
unshare -U true 2>&1 && echo unshare-U=ok
unshare -r true 2>&1 && echo unshare-r=ok
unshare -rm sh -c 'mount -t tmpfs none /tmp && echo tmpfs=ok' 2>&1
perl -e '$p = "\0" x 120; $r = syscall(425, 1, $p); print "io_uring=", ($r == -1 ? ($!+0) : "ok"), "\n"'
p ptrace 101 0 0 0 0
p clone_newuser 56 268435473 0 0 0 0
p unshare_newuser 272 268435456
p setns 308 -1 0
p clone3 435 0 0
p keyctl 250 0 -3 0
p personality 135 262144
p unshare_fs 272 512
p move_pages 279 0 0 0 0 0 0
p process_vm_readv 310 1 0 0 0 0 0
echo pipeline | sh -c 'cat' | perl -ne 'print "perl=ok\n" if /pipeline/'
`;

function probes(stdout: string): Record<string, string> {
  return Object.fromEntries([...stdout.matchAll(/^([a-z_0-9-]+)=(\S+)$/gm)].map((m) => [m[1], m[2]]));
}

describe('ContainerDriver hardening', () => {
  let driver: ContainerDriver;
  let env: ContainerHandle;
  let tmp: TempDir;
  let state: TempDir;
  let skip: string | null = null;
  let oldUmask = 0;

  before(async () => {
    oldUmask = process.umask(0o077);
    tmp = makeTempDir('orch-hardening-');
    state = makeTempDir('orch-hardening-state-', { traversable: true });
    const image = await checkImage(testImageDir(), TEST_IMAGE);
    if (!image.ok) skip = `image ${TEST_IMAGE} missing: ${image.problem}`;
    else if (process.arch !== 'x64') skip = 'the seccomp tables are for x86_64';
    if (skip) return;
    driver = new ContainerDriver({ imageDir: testImageDir(), logger: silentLogger, stateDir: state.path });
    await driver.preflight(shape);
    env = await driver.provision(`hardening-${process.pid}`, shape);
  });
  after(async () => {
    if (driver && env) await driver.destroy(env);
    await driver?.close();
    tmp?.cleanup();
    state?.cleanup();
    process.umask(oldUmask);
  });

  const spec = (over: Partial<RunSpec> & { script: string }): RunSpec => ({
    testId: 'hardening',
    attempt: 1,
    env: {},
    timeoutMs: 20_000,
    services: [],
    artifactPaths: [],
    artifactDir: path.join(tmp.path, 'art'),
    maxOutputBytes: 65536,
    ...over,
  });

  it('a UNIT test gets the baseline filter: namespaces, mounts, io_uring, ptrace, keyrings fail with EPERM; ordinary programs work', async (t) => {
    if (skip) return t.skip(skip);
    const o = await driver.run(env, spec({ script: PROBE }));
    assert.equal(o.exitCode, 0, o.stderr);
    assert.match(o.stdout, /Seccomp:\s+2/);
    const r = probes(o.stdout);
    assert.ok(!('unshare-U' in r) && !('unshare-r' in r) && !('tmpfs' in r), `no user namespace, no tmpfs mount:\n${o.stdout}`);
    assert.equal((o.stdout.match(/unshare failed: Operation not permitted/g) ?? []).length, 3, o.stdout);
    for (const name of ['io_uring', 'ptrace', 'clone_newuser', 'unshare_newuser', 'setns', 'keyctl', 'personality', 'process_vm_readv']) {
      assert.equal(r[name], '1', `${name} should fail with EPERM:\n${o.stdout}`);
    }
    assert.equal(r.clone3, '38', 'clone3 fails with ENOSYS (glibc falls back to clone)');
    // Not denied to a UNIT test: harmless unshare flags, page migration; and ordinary pipelines.
    assert.equal(r.unshare_fs, 'ok');
    assert.equal(r.move_pages, 'ok');
    assert.equal(r.perl, 'ok');
  });

  it('a SECURITY test gets the stricter filter: also unshare with any flag and move_pages', async (t) => {
    if (skip) return t.skip(skip);
    const o = await driver.run(env, spec({ isolation: 'hardened', script: PROBE }));
    assert.equal(o.exitCode, 0, o.stderr);
    assert.match(o.stdout, /Seccomp:\s+2/);
    const r = probes(o.stdout);
    for (const name of ['io_uring', 'ptrace', 'clone_newuser', 'setns', 'keyctl', 'unshare_fs', 'move_pages']) {
      assert.equal(r[name], '1', `${name} should fail with EPERM:\n${o.stdout}`);
    }
    assert.equal(r.perl, 'ok');
  });

  /** What a SECURITY test may write, and what it holds: each line `name=value`. */
  const PROFILE = String.raw`
grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' /proc/self/status | tr -d '	' | sed 's/:/=/'
w() { if touch "$2/probe" 2>/dev/null; then echo "write_$1=yes"; else echo "write_$1=no"; fi; }
w tmp /tmp; w run /run; w shm /dev/shm; w etc /etc; w root ''; w work /work
f=$(mktemp) && echo "mktemp=$f"
if unshare -U true 2>/dev/null; then echo userns=yes; else echo userns=no; fi
perl -e '$r = syscall(279, 0, 0, 0, 0, 0, 0); print "move_pages=", ($r == -1 ? ($!+0) : "ok"), "
"'
/bin/true; /bin/true
`;

  it('a SECURITY test: everything but /work read-only, TMPDIR in /work, no capabilities, no user namespaces', async (t) => {
    if (skip) return t.skip(skip);
    const o = await driver.run(env, spec({ isolation: 'hardened', script: PROFILE, artifactDir: path.join(tmp.path, 'art-profile') }));
    assert.equal(o.exitCode, 0, o.stderr);
    const r = probes(o.stdout);
    for (const cap of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) assert.match(o.stdout, new RegExp(`^${cap}=0+$`, 'm'), `${cap}:\n${o.stdout}`);
    assert.deepEqual(
      [r.write_tmp, r.write_run, r.write_shm, r.write_etc, r.write_root, r.write_work],
      ['no', 'no', 'no', 'no', 'no', 'yes'],
      `only /work is writable:\n${o.stdout}`,
    );
    assert.match(r.mktemp ?? '', /^\/work\/\.tmp\/tmp\./, 'mktemp honours TMPDIR=/work/.tmp');
    assert.equal(r.userns, 'no');
    assert.equal(r.move_pages, '1', 'move_pages, in the strict list, fails with EPERM');
    // The same script as a UNIT test: /tmp is writable there, and it gets no audit.
    const unit = await driver.run(env, spec({ script: PROFILE, artifactDir: path.join(tmp.path, 'art-unit') }));
    assert.match(unit.stdout, /^write_tmp=yes$/m);
    assert.match(unit.stdout, /^mktemp=\/tmp\/tmp\./m);
    assert.ok(!unit.files.some((f) => f.name === 'security-audit.log'), 'no audit of a UNIT test');
  });

  it('a SECURITY test\'s security-audit.log lists the system calls it was denied, with counts, and the programs it executed', async (t) => {
    if (skip) return t.skip(skip);
    if (process.getuid?.() !== 0) return t.skip('the audit needs root (audit socket, tracefs)');
    const script = [
      'unshare -U true 2>/dev/null; unshare -U true 2>/dev/null',
      `perl -e 'syscall(279, 0, 0, 0, 0, 0, 0) for 1..3; syscall(101, 0, 0, 0, 0)'`,
      '/bin/true; /bin/true; /bin/echo done',
      // a test that leaves a file by the audit's name does not replace the audit
      'echo forged > security-audit.log',
    ].join('\n');
    const o = await driver.run(env, spec({ isolation: 'hardened', script, artifactPaths: ['*.log'], artifactDir: path.join(tmp.path, 'art-audit') }));
    assert.equal(o.exitCode, 0, o.stderr);
    const file = o.files.find((f) => f.name === 'security-audit.log');
    assert.ok(file, `an audit among ${o.files.map((f) => f.name).join(', ')}`);
    assert.equal(file.kind, 'LOG');
    const text = readFileSync(file.path, 'utf8');
    assert.doesNotMatch(text, /^forged/m);
    assert.match(o.artifactNotes?.join('\n') ?? '', /security-audit\.log left out: it has the name of a file collected before it/);
    // unshare -U: unshare(CLONE_NEWUSER), twice; move_pages three times and ptrace once, from perl
    assert.match(text, /^ {2}move_pages +3 {2}EPERM {2}\(\/usr\/bin\/perl 3\)$/m, text);
    assert.match(text, /^ {2}unshare +2 {2}EPERM {2}\(\/usr\/bin\/unshare 2\)$/m, text);
    assert.match(text, /^ {2}ptrace +1 {2}EPERM/m, text);
    assert.match(text, /^6 denied calls/m, text);
    assert.doesNotMatch(text, /did not confirm|may be low|not monitored/, text);
    // executed: the script's shell, unshare twice, perl, /bin/true twice, echo
    assert.match(text, /^ +2 {2}\/bin\/true$/m, text);
    assert.match(text, /^ +2 {2}\/usr\/bin\/unshare$/m, text);
    assert.match(text, /^ +1 {2}\/bin\/echo$/m, text);
    assert.match(text, /pid \d+ {2}\/bin\/sh$/m, text);
    assert.doesNotMatch(text, /setpriv|bwrap/, 'the driver\'s own execs are left out');
  });

  /** Runs driver-child.js (mode direct or remote) with fd 251 open in it and `env`. */
  function runChild(mode: 'direct' | 'remote', script: string, extraEnv: Record<string, string> = {}) {
    const file = path.join(tmp.path, 'fd251.txt');
    writeFileSync(file, 'a descriptor of the host\n');
    const fd = openSync(file, 'r');
    const stdio: ('ignore' | 'pipe' | number)[] = ['ignore', 'pipe', 'pipe', ...Array<'ignore'>(248).fill('ignore'), fd];
    const child = spawn(process.execPath, [path.join(__dirname, '..', 'helpers', 'driver-child.js'), mode, testImageDir(), state.path, TEST_IMAGE, script], {
      stdio,
      env: { PATH: process.env.PATH, ...extraEnv },
    });
    closeSync(fd);
    let out = '';
    let err = '';
    child.stdout!.on('data', (b: Buffer) => (out += b));
    child.stderr!.on('data', (b: Buffer) => (err += b));
    return new Promise<{ stdout: string; stderr: string; exitCode: number | null; hostEnv: string[][] }>((resolve, reject) => {
      child.once('close', (code) => {
        if (code !== 0) return reject(new Error(`driver-child ${mode} exited ${code}: ${err}`));
        resolve(JSON.parse(out));
      });
    });
  }

  const LIST_FDS = `perl -e 'opendir(D, "/proc/self/fd"); print join(" ", sort { $a <=> $b } grep { /^\\d+$/ && $_ != fileno(D) } readdir D), "\\n"'; ls /proc/1/fd | tr '\\n' ' '`;

  it('a sandbox has only descriptors 0-2, whatever its driver\'s process inherited (fd 251), in process and in a driver host', async (t) => {
    if (skip) return t.skip(skip);
    for (const mode of ['direct', 'remote'] as const) {
      const o = await runChild(mode, LIST_FDS);
      assert.equal(o.exitCode, 0, o.stderr);
      const [self, init] = o.stdout.split('\n');
      assert.equal(self, '0 1 2', `${mode}: the test's descriptors`);
      // fd 251 makes the wrapper bash, whose stdin (the environment) is a socket: no ~/.bashrc of root's ran
      assert.equal(o.stderr, '', `${mode}: the sandbox's stderr`);
      assert.doesNotMatch(init, /\b251\b/, `${mode}: the sandbox's init holds no host descriptor (${init})`);
    }
  });

  it('the driver host gets no DATABASE_URL or REDIS_URL (nor anything else but what it needs)', async (t) => {
    if (skip) return t.skip(skip);
    const o = await runChild('remote', 'true', {
      DATABASE_URL: 'postgresql://orch:db-secret@127.0.0.1/orch',
      REDIS_URL: 'redis://:redis-secret@127.0.0.1:6379',
      SOME_TOKEN: 'token-secret',
    });
    assert.equal(o.hostEnv.length, 1, 'one driver host');
    const names = o.hostEnv[0].map((v) => v.split('=')[0]);
    assert.ok(names.includes('ORCH_DRIVER_HOST_OPTIONS') && names.includes('PATH'), names.join(' '));
    for (const bad of ['DATABASE_URL', 'REDIS_URL', 'SOME_TOKEN']) assert.ok(!names.includes(bad), `${bad} reached the driver host`);
    assert.doesNotMatch(o.hostEnv[0].join('\n'), /secret/);
  });

  it('the root side follows no link the test planted in its control dir, and the environment survives it', async (t) => {
    if (skip) return t.skip(skip);
    const hostFile = path.join(tmp.path, 'host-only.txt');
    writeFileSync(hostFile, 'exit 0\n');
    // The old start marker, the status file and its temp file, service logs: links to host paths
    // (which exist on the host, not in the sandbox), then everything in the control dir removed.
    const plant = (target: string) =>
      `cd /run/orchestrator && for f in started status status.tmp service-0.log runner.sh; do rm -f $f; ln -s ${target} $f; done`;
    for (const [script, want] of [
      [`${plant('/nonexistent-on-the-host')}; exit 3`, 3],
      [`${plant(hostFile)}; exit 4`, 4],
      ['rm -rf /run/orchestrator/* /run/orchestrator/.[!.]*; exit 5', 5],
    ] as const) {
      const o = await driver.run(env, spec({ script }));
      assert.equal(o.exitCode, want, `${script}: ${o.stderr}`);
      assert.equal(o.signal, null);
    }
    // With services (the runner shell reads and writes the control dir too).
    const svc = await driver.run(
      env,
      spec({ services: [{ name: 'svc', command: 'sleep 30' }], script: `${plant(hostFile)}; exit 6` }),
    );
    assert.equal(svc.exitCode, 6, svc.stderr);
    assert.equal((await driver.run(env, spec({ script: 'echo fine' }))).stdout, 'fine\n');
    assert.deepEqual(await driver.healthCheck(env), { ok: true });
    assert.equal(statSync(hostFile).size, 7, 'the host file is untouched');
  });

  it('a sandbox that never starts is still an infrastructure error', async (t) => {
    if (skip) return t.skip(skip);
    const broken = new ContainerDriver({ imageDir: testImageDir(), logger: silentLogger, stateDir: state.path, bwrapPath: '/bin/false' });
    const h = await broken.provision(`broken-${process.pid}`, shape);
    try {
      await assert.rejects(broken.run(h, spec({ script: 'true' })), InfrastructureError);
    } finally {
      await broken.destroy(h);
      await broken.close();
    }
  });

  it('work and control dirs are the sandbox user\'s alone (0700), and scripts run under umask 077', async (t) => {
    if (skip) return t.skip(skip);
    const o = await driver.run(env, spec({ script: 'echo x > made.txt; stat -c %a /work' }));
    assert.equal(o.exitCode, 0, o.stderr);
    const { uid } = driver.sandboxHostIds;
    // with a disk limit the control dir is on its own tmpfs (run/ctl), else beside work
    const ctl = existsSync(path.join(env.stateDir, 'run', 'ctl')) ? path.join('run', 'ctl') : 'ctl';
    for (const dir of ['work', ctl]) {
      const st = statSync(path.join(env.stateDir, dir));
      assert.equal(st.mode & 0o777, 0o700, `${dir} mode ${(st.mode & 0o777).toString(8)}`);
      assert.equal(st.uid, uid, `${dir} owner`);
    }
    assert.equal(statSync(env.stateDir).mode & 0o777, 0o711, 'the environment dir: traversable, not listable');
    assert.ok(existsSync(path.join(env.stateDir, 'work', 'made.txt')));
  });

  it("no value of a test (env, script, service, ready check) shows in any host process's command line or environment, in process and in a driver host", async (t) => {
    if (skip) return t.skip(skip);
    if (process.getuid?.() !== 0) return t.skip('scanning as another user needs root');
    const remote = new RemoteDriver('CONTAINER', { imageDir: testImageDir(), stateDir: state.path }, silentLogger);
    // the container driver's handle (also as it comes back from its driver host) names its state dir
    const drivers: [string, EnvironmentDriver, ContainerHandle | null][] = [['in process', driver, env], ['driver host', remote, null]];
    try {
      for (const [mode, d, h] of drivers) {
        let handle = h;
        if (!handle) {
          await d.preflight(shape);
          handle = (await d.provision(`leak-${process.pid}`, shape)) as ContainerHandle;
        }
        const mark = randomBytes(12).toString('hex');
        const secret = `env-${mark}-${'x'.repeat(4000)}`; // long, with a newline and quotes below
        let ready: () => void = () => undefined;
        const isReady = new Promise<void>((r) => (ready = r));
        let seen = '';
        const stop = path.join(handle.stateDir, 'work', 'stop');
        const run = d.run(handle, spec({
          env: { SECRET: `${secret}\n'"`, OTHER: `other-${mark}` },
          services: [{
            name: `svc-${mark}`,
            command: `sleep 120; : svc-${mark}`,
            // The ready check's own shell records its command line (the sandbox's /proc shows it).
            readyCheck: `tr '\\000' ' ' < /proc/$$/cmdline > /work/ready-cmdline; : ready-${mark}`,
          }],
          artifactPaths: [`art-${mark}/*`],
          script: [
            `# script-${mark}`,
            'case "$SECRET" in env-*) echo "inside=${#SECRET}:$(printf %s "$SECRET" | head -c 28)";; esac',
            'echo "ready-check=$(cat /work/ready-cmdline)"',
            'echo ready',
            'i=0; while [ ! -e /work/stop ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done',
          ].join('\n'),
          timeoutMs: 90_000,
          onOutput: (_s, chunk) => {
            seen += chunk.toString('utf8');
            if (/^ready$/m.test(seen)) ready();
          },
        }));
        await Promise.race([isReady, run.then((o) => assert.fail(`${mode}: the run ended early: ${o.stdout} ${o.stderr}`))]);
        try {
          // cmdline is world-readable: root sees what any user sees there.
          const leaks = hostProcessesMatching(mark).map((pid) => `${pid} ${procComm(pid)}`);
          assert.deepEqual(leaks, [], `${mode}: command lines holding a value of the test`);
          const other = scanAsOtherUser(mark);
          assert.ok(other.readable > 10, `${mode}: the scan read ${other.readable} files`);
          assert.deepEqual(other.found, [], `${mode}: what uid ${OTHER_UID} reads`);
        } finally {
          writeFileSync(stop, '');
        }
        const o = await run;
        assert.equal(o.exitCode, 0, o.stderr);
        assert.match(o.stdout, new RegExp(`^inside=${secret.length + 3}:env-${mark}$`, 'm'), `${mode}: the test sees $SECRET`);
        assert.match(o.stdout, /^ready-check=\S/m);
        assert.doesNotMatch(o.stdout, new RegExp(`ready-${mark}`), `${mode}: the ready check's command line`);
        if (!h) await d.destroy(handle);
      }
    } finally {
      await remote.close();
    }
  });
});
