// The parts of the security audit that need no kernel: the ring-buffer page parser of the exec trace,
// the listener's output, the log's text, the hardened bwrap flags and the audit's copy of the filter.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeAuditString, parseListenerOutput } from '../../src/environments/container/audit-listener';
import { HARDENED_TMPDIR, buildBwrapArgs } from '../../src/environments/container/bwrap-args';
import { parsePage, type TraceEvent } from '../../src/environments/container/trace-page';
import { buildSeccompFilter } from '../../src/environments/container/seccomp';
import { formatAudit } from '../../src/environments/container/security-audit';

const FORMATS = { exec: { id: 365, filename: 8, pid: 12, oldPid: 16 }, fork: { id: 366, parentPid: 12, childPid: 20 }, exit: { id: 369, pid: 24 } };

/** One sched_process_exec record as the kernel writes it (header, then the payload). */
function execRecord(delta: number, pid: number, filename: string, id = FORMATS.exec.id): Buffer {
  const name = Buffer.from(`${filename}\0`, 'utf8');
  const payloadLen = Math.ceil((20 + name.length) / 4) * 4;
  const payload = Buffer.alloc(payloadLen);
  payload.writeUInt16LE(id, 0);
  payload.writeInt32LE(pid, 4);
  payload.writeUInt32LE(20 | (name.length << 16), 8);
  payload.writeInt32LE(pid, 12);
  payload.writeInt32LE(pid, 16);
  name.copy(payload, 20);
  if (payloadLen <= 28 * 4) {
    const h = Buffer.alloc(4);
    h.writeUInt32LE((payloadLen / 4) | (delta << 5));
    return Buffer.concat([h, payload]);
  }
  const h = Buffer.alloc(8);
  h.writeUInt32LE(0 | (delta << 5));
  h.writeUInt32LE(payloadLen + 4, 4);
  return Buffer.concat([h, payload]);
}

function page(ts: bigint, records: Buffer[]): Buffer {
  const data = Buffer.concat(records);
  const p = Buffer.alloc(4096);
  p.writeBigUInt64LE(ts, 0);
  p.writeBigUInt64LE(BigInt(data.length), 8);
  data.copy(p, 16);
  return p;
}

describe('exec trace pages', () => {
  it('reads each exec with its time, pid and file name, skipping other events and time records', () => {
    const extend = Buffer.alloc(8);
    extend.writeUInt32LE(30 | (5 << 5));
    extend.writeUInt32LE(1, 4); // + 1 << 27 ns
    const out: TraceEvent[] = [];
    const problem = parsePage(
      page(1000n, [
        execRecord(10, 41, '/bin/sh'),
        execRecord(3, 42, '/bin/true', 400), // an event of another type
        extend,
        execRecord(7, 43, `/usr/bin/${'x'.repeat(200)}`), // a long one: type_len 0
      ]),
      FORMATS,
      out,
    );
    assert.equal(problem, null);
    assert.deepEqual(out.map((e) => e.kind === 'exec' && [e.ts, e.pid, e.filename]), [
      [1010n, 41, '/bin/sh'],
      [1010n + 3n + (1n << 27n) + 5n + 7n, 43, `/usr/bin/${'x'.repeat(200)}`],
    ]);
  });

  it('keeps a file name holding a newline and a forged line as one record', () => {
    const out: TraceEvent[] = [];
    const forged = '/tmp/a\n sh-1 [000] ..... 1.0: sched_process_exec: filename=/bin/forged pid=1 old_pid=1';
    assert.equal(parsePage(page(0n, [execRecord(1, 7, forged)]), FORMATS, out), null);
    assert.equal(out.length, 1);
    assert.equal(out[0].kind === 'exec' && out[0].filename, forged);
  });

  it('says so when an event runs past its page', () => {
    const rec = execRecord(1, 7, '/bin/sh');
    const p = page(0n, [rec]);
    p.writeBigUInt64LE(BigInt(rec.length - 4), 8); // the page claims less data than the event holds
    assert.match(String(parsePage(p, FORMATS, [])), /beyond/);
  });
});

describe('audit listener output', () => {
  it('decodes records, counts and stats, and the kernel\'s hex encoding of odd strings', () => {
    assert.equal(decodeAuditString('"perl"'), 'perl');
    assert.equal(decodeAuditString('612062'), 'a b');
    const s = parseListenerOutput(
      [
        'rec\t1796173096.522\t272\tc000003e\t0\t0x50000\t"perl"\t"/usr/bin/perl"\t31805',
        'rec\t1796173096.530\t101\tc000003e\t0\t0x50000\t612062\t"/usr/bin/perl"\t31806',
        'count\t272\tc000003e\t0\t0x50000\t"/usr/bin/perl"\t1',
        'count\t101\tc000003e\t0\t0x50000\t"/usr/bin/perl"\t5',
        'stat\trecords\t6',
        'stat\tdrained\t1',
        'stat\tlost\t10\t12',
        'end',
      ].join('\n'),
    );
    assert.equal(s.records[1].comm, 'a b');
    assert.equal(s.records[1].at, 1796173096530);
    assert.equal(s.total, 6);
    assert.equal(s.drained, true);
    assert.equal(s.kernelLost, 2);
    assert.deepEqual(s.counts.map((c) => [c.syscall, c.count]), [[272, 1], [101, 5]]);
  });
});

describe('security-audit.log', () => {
  const sentinel = { at: 1000, pid: 10, syscall: 272, arch: 'c000003e', sig: 0, code: '0x50000', comm: 'perl', exe: '/usr/bin/perl' };
  const denials = {
    records: [sentinel, { ...sentinel, at: 1012, pid: 11, comm: 'unshare', exe: '/usr/bin/unshare' }, { ...sentinel, at: 1020, syscall: 101, pid: 12 }],
    counts: [
      { syscall: 272, arch: 'c000003e', sig: 0, code: '0x50000', exe: '/usr/bin/perl', count: 1 },
      { syscall: 272, arch: 'c000003e', sig: 0, code: '0x50000', exe: '/usr/bin/unshare', count: 1 },
      { syscall: 101, arch: 'c000003e', sig: 0, code: '0x50000', exe: '/usr/bin/perl', count: 1 },
    ],
    total: 3,
    uncounted: 0,
    overruns: 0,
    drained: true,
    kernelLost: 0,
    auditDaemonPid: 0,
  };
  const executed = {
    events: [
      { kind: 'exec' as const, ts: 0n, pid: 5, oldPid: 5, filename: '/usr/bin/setpriv' },
      { kind: 'exec' as const, ts: 1n, pid: 5, oldPid: 5, filename: '/usr/bin/bwrap' },
      { kind: 'exec' as const, ts: 2_000_000n, pid: 10, oldPid: 10, filename: '/usr/bin/perl' },
      { kind: 'exec' as const, ts: 3_000_000n, pid: 10, oldPid: 10, filename: '/usr/bin/perl' },
      { kind: 'exec' as const, ts: 4_000_000n, pid: 11, oldPid: 11, filename: '/usr/bin/unshare' },
      { kind: 'exec' as const, ts: 5_000_000n, pid: 12, oldPid: 12, filename: '/bin/echo\nforged' },
    ],
    dropped: 0,
    bufferKb: 1408,
    problem: null,
  };

  it('names each denied call with its count and program, leaving out the loader\'s own test call', () => {
    const text = formatAudit({ denials, executed, notes: [], wrapperPid: 5, loader: true });
    assert.match(text, /^2 denied calls, by system call/m);
    assert.match(text, /^ {2}unshare +1 {2}EPERM {2}\(\/usr\/bin\/unshare 1\)$/m);
    assert.match(text, /^ {2}ptrace +1 {2}EPERM {2}\(\/usr\/bin\/perl 1\)$/m);
    assert.match(text, /\+12 ms {2}pid 11 {2}unshare {2}EPERM {2}\/usr\/bin\/unshare \(comm unshare\)/);
    assert.doesNotMatch(text, /did not confirm/);
  });

  it('lists the executed programs after the driver\'s own, a newline in a name escaped', () => {
    const text = formatAudit({ denials, executed, notes: [], wrapperPid: 5, loader: true });
    assert.match(text, /^2 execs after the orchestrator's runner/m);
    assert.match(text, /^ +1 {2}\/usr\/bin\/unshare$/m);
    assert.doesNotMatch(text, /^ +\d+ {2}\/usr\/bin\/perl$/m, 'the runner is not counted');
    assert.doesNotMatch(text, /setpriv|bwrap/);
    assert.match(text, /pid 10 {2}\/usr\/bin\/perl {2}\(the orchestrator's runner\)/);
    assert.match(text, /pid 11 {2}\/usr\/bin\/unshare$/m);
    assert.match(text, /pid 12 {2}\/bin\/echo\\nforged$/m);
    assert.doesNotMatch(text, /^forged/m);
  });

  it('states what it could not see', () => {
    const text = formatAudit({
      denials: { ...denials, records: denials.records.slice(1), total: 2, drained: false, overruns: 2, kernelLost: 4 },
      executed: { ...executed, dropped: 3 },
      notes: ['a note of the session'],
      wrapperPid: 5,
      loader: true,
    });
    for (const re of [/did not confirm it was loaded/, /overflowed 2 time/, /no end marker/, /lost 4 audit record/, /3 exec\(s\) not recorded/, /^- a note of the session$/m]) {
      assert.match(text, re);
    }
    const none = formatAudit({ denials: null, executed: { unavailable: 'no tracefs' }, notes: [], wrapperPid: undefined, loader: false });
    assert.equal((none.match(/\(not monitored\)/g) ?? []).length, 2);
    assert.match(none, /executed programs: no tracefs/);
  });
});

describe('hardened profile flags', () => {
  const base = { rootfs: '/img', workDir: '/w', ctlDir: '/c', env: {}, command: ['true'] };
  it('remounts /tmp, /run and /dev read-only after the binds below them, only when asked', () => {
    const args = buildBwrapArgs({ ...base, readOnly: true });
    for (const dir of ['/tmp', '/run', '/dev']) {
      assert.ok(args.some((a, i) => a === '--remount-ro' && args[i + 1] === dir), `${dir} read-only: ${args.join(' ')}`);
    }
    assert.ok(args.indexOf('--remount-ro') > args.lastIndexOf('--bind'), 'after the binds');
    assert.ok(!buildBwrapArgs(base).includes('--remount-ro'));
    assert.equal(HARDENED_TMPDIR, '/work/.tmp');
  });

  it('the audit copy of the strict filter differs only in clone3', () => {
    const strict = buildSeccompFilter('strict', 'x64')!;
    const forAudit = buildSeccompFilter('strict', 'x64', { forAudit: true })!;
    assert.equal(strict.length, forAudit.length);
    let diff = 0;
    for (let i = 0; i < strict.length; i += 8) if (!strict.subarray(i, i + 8).equals(forAudit.subarray(i, i + 8))) diff += 1;
    assert.equal(diff, 1, 'one instruction: the jump of clone3');
  });
});
