// The shared conformance suite: the same scripts and expectations for every EnvironmentDriver.
// A driver's test file calls runDriverConformance(name, makeDriver, shape, hooks) once. What the suite
// cannot see for itself (the processes and files of an environment: host processes for a container,
// the guest's for a VM) it asks the driver's hooks; what a driver does not offer (its capabilities)
// it skips, saying so.
//
// Scripts only use what a Debian minbase image has (dash, bash, coreutils, perl-base).

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import {
  WORK_DIR,
  type DriverCapabilities,
  type EnvironmentDriver,
  type EnvironmentHandle,
  type EnvironmentShape,
  type RunOutcome,
  type RunSpec,
} from '../../src/environments/driver.js';
import { makeTempDir, uniqueSleepArg, type TempDir } from '../helpers/sandbox-env.js';

/** A driver to test, or why the suite must be skipped (e.g. the image is missing and cannot be built). */
export type DriverUnderTest = EnvironmentDriver | { skip: string };

/** What the suite asks a driver about the inside of its environment, between runs. */
export interface ConformanceHooks {
  /**
   * Pids of live processes whose command line contains `marker`, wherever the environment's
   * processes could be: inside it, and anything that escaped it (a container's are host processes).
   */
  processesMatching(env: EnvironmentHandle, marker: string): Promise<number[]>;
  /** Names in the environment's working directory (WORK_DIR), as the driver sees them from outside. */
  workDirEntries(env: EnvironmentHandle): Promise<string[]>;
  /**
   * The test is root of a machine of its own (a VM): it may write its own /etc (thrown away by the
   * reset), never the host's. Unset: an unprivileged user (a container), for whom /etc is read-only.
   */
  rootInside?: boolean;
  /** Why this driver's environments cannot show the OOM case here (said as the test's skip reason). */
  oomSkip?: string;
}

export function runDriverConformance(
  name: string,
  makeDriver: () => Promise<DriverUnderTest>,
  shape: EnvironmentShape,
  hooks: ConformanceHooks,
): void {
  describe(`${name} driver conformance`, () => {
    let driver: EnvironmentDriver | null = null;
    let skipReason: string | null = null;
    let env: EnvironmentHandle;
    let tmp: TempDir;
    let seq = 0;

    before(async () => {
      tmp = makeTempDir(`conf-${name.toLowerCase()}-`);
      const made = await makeDriver();
      if ('skip' in made) {
        skipReason = made.skip;
        return;
      }
      driver = made;
      await driver.preflight(shape);
      env = await driver.provision(`conf-${name.toLowerCase()}-${process.pid}`, shape);
    });

    after(async () => {
      if (driver && env) await driver.destroy(env);
      await driver?.close?.();
      tmp?.cleanup();
    });

    /**
     * Returns the driver, or marks the test skipped (with the reason) and returns null: when the suite
     * is skipped, or the driver lacks a capability the test needs.
     */
    function ready(t: TestContext, needs: (keyof DriverCapabilities)[] = []): EnvironmentDriver | null {
      if (skipReason !== null) {
        t.skip(skipReason);
        return null;
      }
      assert.ok(driver, 'driver was not created');
      const missing = needs.filter((c) => !driver!.capabilities[c]);
      if (missing.length) {
        t.skip(`the ${name} driver does not offer ${missing.join(', ')}`);
        return null;
      }
      return driver;
    }

    const processesMatching = (marker: string) => hooks.processesMatching(env, marker);

    function spec(over: Partial<RunSpec> & { script: string }): RunSpec {
      seq += 1;
      return {
        testId: `t${seq}`,
        attempt: 1,
        env: {},
        timeoutMs: 15_000,
        services: [],
        artifactPaths: [],
        artifactDir: path.join(tmp.path, `artifacts-${seq}`),
        maxOutputBytes: 1024 * 1024,
        ...over,
      };
    }

    async function run(d: EnvironmentDriver, over: Partial<RunSpec> & { script: string }): Promise<RunOutcome> {
      await d.reset(env);
      return d.run(env, spec(over));
    }

    it('captures stdout, stderr and the exit code', async (t) => {
      const d = ready(t);
      if (!d) return;
      const o = await run(d, { script: 'echo out-line\necho err-line >&2\nexit 7\n' });
      assert.equal(o.stdout, 'out-line\n');
      assert.equal(o.stderr, 'err-line\n');
      assert.equal(o.exitCode, 7);
      assert.equal(o.signal, null);
      assert.equal(o.timedOut, false);
      assert.equal(o.aborted, false);
      assert.equal(o.outputTruncated, false);
      assert.ok(o.durationMs >= 0);
      const ok = await run(d, { script: 'true' });
      assert.equal(ok.exitCode, 0);
    });

    it('reports death by signal, distinct from exit 139', async (t) => {
      const d = ready(t);
      if (!d) return;
      const o = await run(d, { script: 'echo before\nkill -SEGV $$\necho after\n' });
      assert.equal(o.signal, 'SIGSEGV');
      assert.equal(o.exitCode, null);
      assert.equal(o.stdout, 'before\n');
      const e = await run(d, { script: 'exit 139' });
      assert.equal(e.exitCode, 139);
      assert.equal(e.signal, null);
    });

    it('kills the whole tree at the timeout, double-forked daemons included', async (t) => {
      const d = ready(t);
      if (!d) return;
      const daemon = uniqueSleepArg();
      const fg = uniqueSleepArg();
      const o = await run(d, {
        timeoutMs: 1500,
        script: `sh -c 'sleep ${daemon} >/dev/null 2>&1 &' &\nsetsid sleep ${daemon} >/dev/null 2>&1 &\necho started\nsleep ${fg}\necho never\n`,
      });
      assert.equal(o.timedOut, true);
      assert.equal(o.exitCode, null);
      assert.match(o.stdout, /started/);
      assert.doesNotMatch(o.stdout, /never/);
      assert.ok(o.durationMs < 1500 + 3000, `took ${o.durationMs} ms`);
      assert.deepEqual(await processesMatching(daemon), [], 'a daemon survived on the host');
      assert.deepEqual(await processesMatching(fg), []);
      // `[9]87.1` matches the marker but not grep's own command line.
      const pattern = `[${daemon[0]}]${daemon.slice(1)}`;
      const check = await run(d, { script: `grep -l '${pattern}' /proc/[0-9]*/cmdline 2>/dev/null || true` });
      assert.equal(check.stdout.trim(), '', 'a daemon survived in the environment');
    });

    it('caps output and reports truncation; streams live chunks', async (t) => {
      const d = ready(t);
      if (!d) return;
      const live: Record<string, Buffer[]> = { stdout: [], stderr: [] };
      const o = await run(d, {
        maxOutputBytes: 1000,
        script: "head -c 5000 /dev/zero | tr '\\0' a\nhead -c 300 /dev/zero | tr '\\0' b >&2\n",
        onOutput: (stream, chunk) => live[stream].push(chunk),
      });
      assert.equal(o.exitCode, 0);
      assert.equal(o.stdout, 'a'.repeat(1000));
      assert.equal(o.stderr, 'b'.repeat(300));
      assert.equal(o.outputTruncated, true);
      assert.equal(Buffer.concat(live.stdout).toString(), o.stdout);
      assert.equal(Buffer.concat(live.stderr).toString(), o.stderr);
    });

    it('returns the output bytes exactly (NUL, invalid UTF-8), live chunks too', async (t) => {
      const d = ready(t);
      if (!d) return;
      const live: Buffer[] = [];
      const o = await run(d, { script: "printf 'a\\000b\\377c'; printf '\\000' >&2", onOutput: (stream, chunk) => stream === 'stdout' && live.push(chunk) });
      assert.equal(o.exitCode, 0);
      assert.ok(Buffer.isBuffer(o.stdoutBytes), 'a Buffer, also across a process boundary');
      assert.deepEqual(o.stdoutBytes, Buffer.from([0x61, 0, 0x62, 0xff, 0x63]));
      assert.deepEqual(o.stderrBytes, Buffer.from([0]));
      assert.deepEqual(Buffer.concat(live), o.stdoutBytes);
    });

    it('sets the test environment variables and nothing from the host', async (t) => {
      const d = ready(t);
      if (!d) return;
      process.env.ORCH_CONFORMANCE_LEAK_PROBE = 'leaked';
      try {
        const o = await run(d, {
          env: { GREETING: "hello 'quoted' $world", EMPTY: '' },
          script: 'printf "%s|%s|%s\\n" "$GREETING" "${EMPTY-unset}" "$HOME"\nenv\ncommand -v sh\n',
        });
        assert.equal(o.exitCode, 0, o.stderr);
        const [first] = o.stdout.split('\n');
        assert.equal(first, `hello 'quoted' $world||${WORK_DIR}`);
        assert.doesNotMatch(o.stdout, /ORCH_CONFORMANCE_LEAK_PROBE/);
        assert.match(o.stdout, /^PATH=.*\/bin/m);
      } finally {
        delete process.env.ORCH_CONFORMANCE_LEAK_PROBE;
      }
    });

    it('runs a #! script with its interpreter', async (t) => {
      const d = ready(t);
      if (!d) return;
      const o = await run(d, { script: '#!/bin/bash\necho "bash=${BASH_VERSINFO[0]}"\n' });
      assert.equal(o.exitCode, 0, o.stderr);
      assert.match(o.stdout, /^bash=\d+$/m);
      const sh = await run(d, { script: '#!/bin/sh\necho plain-sh\nexit 3\n' });
      assert.equal(sh.stdout, 'plain-sh\n');
      assert.equal(sh.exitCode, 3);
    });

    it('isolates: no host /tmp, no host /etc writes, no host loopback network', async (t) => {
      const d = ready(t);
      if (!d) return;
      const secretName = `orch-secret-${process.pid}-${Date.now()}`;
      const secretPath = path.join('/tmp', secretName);
      writeFileSync(secretPath, 'host-secret-content');
      const etcProbe = `/etc/orch-probe-${process.pid}`;
      let connections = 0;
      const server = net.createServer((s) => {
        connections++;
        s.destroy();
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const port = (server.address() as net.AddressInfo).port;
      try {
        const o = await run(d, {
          timeoutMs: 10_000,
          script: [
            `cat ${secretPath} 2>/dev/null && echo READ-HOST-TMP`,
            `echo pwned > ${etcProbe} 2>/dev/null && echo WROTE-ETC`,
            `echo pwned >> /etc/hostname 2>/dev/null && echo WROTE-HOSTNAME`,
            `bash -c 'echo hi > /dev/tcp/127.0.0.1/${port}' 2>/dev/null && echo CONNECTED`,
            'echo done',
          ].join('\n'),
        });
        assert.match(o.stdout, /done/);
        assert.doesNotMatch(o.stdout, /host-secret-content|READ-HOST-TMP/);
        if (!hooks.rootInside) assert.doesNotMatch(o.stdout, /WROTE-ETC|WROTE-HOSTNAME/);
        assert.doesNotMatch(o.stdout, /CONNECTED/);
        assert.equal(existsSync(etcProbe), false);
        assert.equal(connections, 0);
      } finally {
        server.close();
        await import('node:fs').then((fs) => fs.rmSync(secretPath, { force: true }));
      }
    });

    it('stops a fork bomb at the process limit and leaves nothing behind', async (t) => {
      const d = ready(t, ['resourceLimits']);
      if (!d) return;
      const marker = uniqueSleepArg();
      const o = await run(d, {
        timeoutMs: 5000,
        script: `i=0\nwhile [ $i -lt ${shape.pids * 4} ]; do sleep ${marker} & i=$((i + 1)); done\necho all-started\n`,
      });
      assert.doesNotMatch(o.stdout, /all-started/, 'more processes than the pids limit were started');
      assert.ok(o.durationMs < 5000 + 3000);
      assert.deepEqual(await processesMatching(marker), []);
      const bomb = await run(d, {
        timeoutMs: 3000,
        script: `cp /bin/sh /tmp/bomb\n/tmp/bomb -c 'b() { b | b & }; b' 2>/dev/null\nsleep 2\n`,
      });
      assert.ok(bomb.durationMs < 3000 + 3000, `bomb run took ${bomb.durationMs} ms`);
      assert.deepEqual(await processesMatching('/tmp/bomb'), []);
    });

    it('OOM-kills a memory hog over the memory limit', async (t) => {
      const d = ready(t, ['resourceLimits']);
      if (!d) return;
      if (hooks.oomSkip) return t.skip(hooks.oomSkip);
      const o = await run(d, {
        timeoutMs: 20_000,
        script: `head -c ${shape.memoryMb * 3}M /dev/zero | tail > /dev/null\necho exit=$?\n`,
      });
      assert.equal(o.oomKilled, true, `stdout=${o.stdout} stderr=${o.stderr}`);
      assert.equal(o.timedOut, false);
    });

    it('reports CPU time and peak memory', async (t) => {
      const d = ready(t, ['resourceLimits']);
      if (!d) return;
      const o = await run(d, { script: 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; head -c 20M /dev/zero | tail >/dev/null' });
      assert.equal(o.exitCode, 0);
      assert.ok(o.cpuTimeMs !== null && o.cpuTimeMs > 0, `cpuTimeMs=${o.cpuTimeMs}`);
      assert.ok(o.peakMemoryBytes !== null && o.peakMemoryBytes > 20 * 1024 * 1024, `peak=${o.peakMemoryBytes}`);
    });

    it('reports user and system CPU, context switches, and the bytes a test wrote', async (t) => {
      const d = ready(t, ['detailedMetrics']);
      if (!d) return;
      const o = await run(d, {
        // user time (a shell loop), kernel time (200,000 one-byte reads and writes), 10 MiB written and synced
        script: 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done\ndd if=/dev/zero of=/dev/null bs=1 count=200000 2>/dev/null\ndd if=/dev/zero of=big bs=1M count=10 conv=fsync 2>/dev/null\nrm big\n',
      });
      assert.equal(o.exitCode, 0, o.stderr);
      const m = { user: o.userCpuMs, system: o.systemCpuMs, vcsw: o.voluntaryContextSwitches, ivcsw: o.involuntaryContextSwitches, read: o.readBytes, write: o.writeBytes };
      assert.ok(typeof m.user === 'number' && m.user > 0, JSON.stringify(m));
      assert.ok(typeof m.system === 'number' && m.system > 0, `400,000 system calls take kernel time: ${JSON.stringify(m)}`);
      assert.ok(typeof m.vcsw === 'number' && m.vcsw > 0, `fsync waits: ${JSON.stringify(m)}`);
      assert.ok(typeof m.ivcsw === 'number' && m.ivcsw >= 0, JSON.stringify(m));
      assert.ok(typeof m.read === 'number' && m.read >= 0, JSON.stringify(m));
      assert.ok(typeof m.write === 'number' && m.write >= 10 * 1024 * 1024, `10 MiB written: ${JSON.stringify(m)}`);
    });

    it('keeps the figures a test reports itself: ##metric lines on stdout, then $METRICS_FILE', async (t) => {
      const d = ready(t);
      if (!d) return;
      const o = await run(d, {
        maxOutputBytes: 1000,
        script: [
          "printf '##metric latency_ms 12.5 ms\\n##metric count 3\\nnot ##metric x 1\\n##metric bad NaN\\n##metric bad 1 two units\\n'",
          // beyond the kept part of stdout: still counted
          'head -c 5000 /dev/zero | tr "\\0" x; echo',
          "printf '##metric after_cap -4e-3\\r\\n'",
          `echo '[{"name":"from_file","value":2,"unit":"s"},{"name":"no_value"},{"name":"str","value":"1"}]' > "$METRICS_FILE"`,
          "printf '##metric last 1'",
        ].join('\n'),
      });
      assert.equal(o.exitCode, 0, o.stderr);
      assert.equal(o.outputTruncated, true);
      assert.deepEqual(o.reportedMetrics, [
        { name: 'latency_ms', value: 12.5, unit: 'ms' },
        { name: 'count', value: 3, unit: null },
        { name: 'after_cap', value: -0.004, unit: null },
        { name: 'last', value: 1, unit: null },
        { name: 'from_file', value: 2, unit: 's' },
      ]);
      // A FIFO in its place is not waited for; a link is not followed.
      const fifo = await run(d, { script: 'mkfifo "$METRICS_FILE"; echo "##metric ok 1"' });
      assert.deepEqual(fifo.reportedMetrics, [{ name: 'ok', value: 1, unit: null }]);
      const hostFile = path.join(tmp.path, 'host-metrics.json');
      writeFileSync(hostFile, '[{"name":"host_file","value":1}]');
      const link = await run(d, { script: `ln -s ${hostFile} "$METRICS_FILE"` });
      assert.deepEqual(link.reportedMetrics, []);
    });

    it('starts services, waits for their ready checks, kills them with the sandbox', async (t) => {
      const d = ready(t, ['services']);
      if (!d) return;
      const marker = uniqueSleepArg();
      const o = await run(d, {
        services: [
          {
            name: 'slow-db',
            command: `sleep 0.3; echo ready > /tmp/db-ready; echo service-log-line; exec sleep ${marker}`,
            readyCheck: 'test -f /tmp/db-ready',
          },
        ],
        script: 'cat /tmp/db-ready\n',
      });
      assert.equal(o.exitCode, 0, o.stderr);
      assert.equal(o.stdout, 'ready\n');
      assert.deepEqual(await processesMatching(marker), []);
      // The service's output is an artifact of the run, as a user downloads it.
      const log = o.files.find((f) => f.kind === 'LOG' && f.name === 'service-slow-db.log');
      assert.ok(log, `the service's log is collected: files ${JSON.stringify(o.files.map((f) => [f.kind, f.name]))}`);
      assert.match(readFileSync(log.path, 'utf8'), /service-log-line/);

      const never = await run(d, {
        timeoutMs: 3000,
        services: [{ name: 'never-ready', command: 'sleep 60', readyCheck: 'false' }],
        script: 'echo script-ran\n',
      });
      assert.notEqual(never.exitCode, 0);
      assert.doesNotMatch(never.stdout, /script-ran/);
      assert.match(never.stderr, /never-ready/);
    });

    it('writes the complete stdout, stderr and service logs byte-exact, cut with a marker past the log limit', async (t) => {
      const d = ready(t);
      if (!d) return;
      const read = (o: RunOutcome, name: string) => {
        const f = o.files.find((x) => x.name === name);
        assert.ok(f, `${name} in ${JSON.stringify(o.files.map((x) => x.name))}`);
        assert.equal(f.kind, 'LOG');
        const bytes = readFileSync(f.path);
        assert.equal(f.sizeBytes, bytes.length);
        return bytes;
      };
      // NUL, invalid UTF-8, no final newline; more than maxOutputBytes: the log has all of it
      const o = await run(d, {
        maxOutputBytes: 1000,
        script: `printf 'a\\000b\\377c'; head -c 5000 /dev/zero | tr '\\0' x; printf 'err\\000\\376' >&2\n`,
      });
      assert.equal(o.exitCode, 0, o.stderr);
      assert.equal(o.outputTruncated, true, 'the outcome keeps maxOutputBytes');
      assert.equal(o.stdoutBytes.length, 1000);
      assert.deepEqual(read(o, 'stdout.log'), Buffer.concat([Buffer.from([0x61, 0, 0x62, 0xff, 0x63]), Buffer.alloc(5000, 'x')]));
      assert.deepEqual(read(o, 'stderr.log'), Buffer.from([0x65, 0x72, 0x72, 0, 0xfe]));

      // past the log limit: the first maxLogBytes bytes, then one marker line with the count dropped
      const cut = await run(d, { maxLogBytes: 4096, script: 'head -c 10000 /dev/zero | tr "\\0" y; echo; echo short >&2\n' });
      const log = read(cut, 'stdout.log');
      const marker = '\n[test-orchestrator: log cut at the log limit of 4096 bytes (MAX_LOG_BYTES): 5905 more bytes were dropped]\n';
      assert.deepEqual(log.subarray(0, 4096), Buffer.alloc(4096, 'y'));
      assert.equal(log.subarray(4096).toString(), marker);
      assert.equal(read(cut, 'stderr.log').toString(), 'short\n', 'a log under the limit is whole');
      assert.ok(cut.artifactNotes?.includes('stdout.log cut at the log limit of 4096 bytes: 5905 bytes dropped'), JSON.stringify(cut.artifactNotes));

      if (!d.capabilities.services) return;
      const svc = await run(d, {
        maxLogBytes: 100,
        services: [{ name: 'noisy db/1', command: `printf 'svc\\000\\377'; head -c 300 /dev/zero | tr '\\0' z; exec sleep 30`, readyCheck: 'true' }],
        script: 'sleep 0.5\n',
      });
      assert.equal(svc.exitCode, 0, svc.stderr);
      const s = read(svc, 'service-noisy_db_1.log');
      assert.deepEqual(s.subarray(0, 5), Buffer.from([0x73, 0x76, 0x63, 0, 0xff]));
      assert.equal(s.subarray(100).toString(), '\n[test-orchestrator: log cut at the log limit of 100 bytes (MAX_LOG_BYTES): 205 more bytes were dropped]\n');
    });

    it('collects artifacts (globs, no escapes, no symlinks) and core dumps', async (t) => {
      const d = ready(t);
      if (!d) return;
      const artifactDir = path.join(tmp.path, 'art-collect');
      mkdirSync(artifactDir, { recursive: true });
      const o = await run(d, {
        artifactDir,
        artifactPaths: ['out/**', '*.log', '../escape', '/etc/passwd', 'missing/*'],
        script: [
          'mkdir -p out/sub',
          'echo a > out/a.txt',
          'echo b > out/sub/b.txt',
          'echo c > run.log',
          'echo x > ignored.txt',
          'ln -s /etc/passwd out/passwd-link',
          'ln -s /etc out/etc-link',
          'sh -c \'kill -SEGV $$\'',
          'true',
        ].join('\n'),
      });
      assert.equal(o.exitCode, 0, o.stderr);
      const byName = new Map(o.files.map((f) => [f.name, f]));
      assert.deepEqual(
        o.files.filter((f) => f.kind === 'FILE').map((f) => f.name).sort(),
        ['out/a.txt', 'out/sub/b.txt', 'run.log'],
      );
      assert.equal(readFileSync(byName.get('out/sub/b.txt')!.path, 'utf8'), 'b\n');
      for (const f of o.files) {
        assert.ok(f.path.startsWith(artifactDir + path.sep), `${f.path} outside artifactDir`);
        assert.ok(f.sizeBytes > 0 || f.kind === 'LOG', `${f.name} is empty`);
      }
      if (d.capabilities.coreDumps) {
        const core = o.files.find((f) => f.kind === 'CORE_DUMP');
        assert.ok(core, `no core dump collected: ${JSON.stringify(o.files)}`);
      }
    });

    it('aborts through the AbortSignal', async (t) => {
      const d = ready(t);
      if (!d) return;
      const marker = uniqueSleepArg();
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 300);
      const o = await run(d, { signal: ac.signal, script: `sleep ${marker} &\nsleep ${marker}\n` });
      assert.equal(o.aborted, true);
      assert.equal(o.timedOut, false);
      assert.equal(o.exitCode, null);
      assert.ok(o.durationMs < 5000);
      assert.deepEqual(await processesMatching(marker), []);
    });

    it('an abort that comes while the run is being prepared still ends it', async (t) => {
      const d = ready(t);
      if (!d) return;
      const marker = uniqueSleepArg();
      const ac = new AbortController();
      await d.reset(env);
      const running = d.run(env, spec({ signal: ac.signal, script: `sleep ${marker}\n` }));
      ac.abort(); // run() is past its first check and preparing the run
      const o = await running;
      assert.equal(o.aborted, true);
      assert.equal(o.timedOut, false);
      assert.equal(o.exitCode, null);
      assert.ok(o.durationMs < 5000, `ended ${o.durationMs} ms after it started`);
      assert.deepEqual(await processesMatching(marker), []);
    });

    it('reset leaves no file from the previous run', async (t) => {
      const d = ready(t);
      if (!d) return;
      const first = await run(d, { script: 'echo x > leftover.txt\nmkdir -p deep/dir && echo y > deep/dir/f\nls\n' });
      assert.match(first.stdout, /leftover\.txt/);
      await d.reset(env);
      assert.deepEqual(await hooks.workDirEntries(env), [], 'the working directory is empty after a reset');
      const second = await d.run(env, spec({ script: 'ls -A . | grep -v "^\\.test-script$" || true; ls /tmp\n' }));
      assert.equal(second.stdout.trim(), '');
    });

    it('passes its health check', async (t) => {
      const d = ready(t);
      if (!d) return;
      assert.deepEqual(await d.healthCheck(env), { ok: true });
      assert.equal(await d.usage(env), null, 'usage when idle');
    });
  });
}
