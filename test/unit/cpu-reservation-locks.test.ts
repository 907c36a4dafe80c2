// The pieces of host-wide CPU reservations that need no cgroups: the kernel's CPU list format, which
// CPUs may be dedicated, and lock files judged by their holder (src/infra/pid-lock.ts) against real
// processes: a live holder keeps its lock, a dead one's is taken over, a lock is released only by its owner.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { formatCpuList, parseCpuList, reservableCpus } from '../../src/environments/cgroups/cpu-list';
import { parseLockHolder, releaseLockFile, tryLockFile } from '../../src/infra/pid-lock';
import { processStartTime, sleep } from '../../src/infra/process-utils';

const dir = mkdtempSync(join(tmpdir(), 'orch-cpulock-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const lockPath = () => join(dir, `cpu-${n++}.lock`);

describe('CPU lists', () => {
  it('parse and format the kernel format', () => {
    assert.deepEqual(parseCpuList('0-3,5,7-8\n'), [0, 1, 2, 3, 5, 7, 8]);
    assert.deepEqual(parseCpuList(''), []);
    assert.equal(formatCpuList([8, 0, 1, 2, 5, 3, 7]), '0-3,5,7-8');
    assert.equal(formatCpuList([]), '');
    for (const bad of ['a', '1-', '3-1', '1,,2', '-1']) assert.throws(() => parseCpuList(bad), /not a CPU list/, bad);
  });

  it('the lowest CPU is never dedicated; the highest are taken first', () => {
    assert.deepEqual(reservableCpus([0, 1]), [1]);
    assert.deepEqual(reservableCpus([2, 3, 4, 5]), [5, 4, 3]);
    assert.deepEqual(reservableCpus([0]), []);
  });
});

describe('tryLockFile', () => {
  it('takes a free lock, refuses it to another run while its holder lives, releases only its own', () => {
    const path = lockPath();
    const mine = tryLockFile(path, 'run-1');
    assert.ok(mine.ok);
    assert.deepEqual(parseLockHolder(readFileSync(path, 'utf8')), { pid: process.pid, startTime: processStartTime('self'), tag: 'run-1' });
    const again = tryLockFile(path, 'run-2');
    assert.equal(again.ok, false, 'a second run of the same live process waits');
    if (!again.ok) assert.equal(again.holder.tag, 'run-1');
    releaseLockFile(path, 'not my content');
    assert.equal(tryLockFile(path, 'run-3').ok, false, 'someone else’s release does not remove it');
    releaseLockFile(path, mine.ok ? mine.content : '');
    assert.ok(tryLockFile(path, 'run-4').ok);
  });

  it('takes over the lock of a holder that is gone, or whose pid was reused', async () => {
    const child = spawn('sleep', ['30']);
    const pid = child.pid!;
    const start = processStartTime(pid)!;
    const path = lockPath();
    writeFileSync(path, `${pid}\nstart=${start}\ntag=other\n`);
    assert.equal(tryLockFile(path, 'me').ok, false, 'held while it lives');
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    await sleep(20);
    const taken = tryLockFile(path, 'me');
    assert.ok(taken.ok, 'its holder is gone');
    const reused = lockPath();
    writeFileSync(reused, `${process.pid}\nstart=1\ntag=old\n`); // our pid, another start time
    assert.ok(tryLockFile(reused, 'me').ok);
    const garbage = lockPath();
    writeFileSync(garbage, 'not a lock');
    assert.ok(tryLockFile(garbage, 'me').ok, 'a file naming no holder holds nothing');
  });

  it('refuses what is not a regular file, without following it', () => {
    const target = join(dir, 'target');
    writeFileSync(target, `${process.pid}\nstart=${processStartTime('self')}\n`);
    const link = lockPath();
    symlinkSync(target, link);
    assert.throws(() => tryLockFile(link, 'me'), /symbolic link/);
    assert.throws(() => tryLockFile(join(dir, 'x.lock'), 'bad tag with spaces'), /invalid lock tag/);
  });
});
