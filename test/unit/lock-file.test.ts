// The embedded database's lock (src/db/lock-file.ts) against real processes: a live holder is refused;
// a zombie, a dead pid or a reused pid is taken over; what is not a regular file is an error, not a hang.
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { acquireLockFile } from '../../src/db/lock-file';
import { processLife, processStartTime, safeKill, sleep } from '../../src/infra/process-utils';

const dir = mkdtempSync(join(tmpdir(), 'orch-lock-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const lockPath = () => join(dir, `lock-${n++}`);

/** A process that stays a zombie: perl forks a child that exits at once and never reaps it. */
async function zombie(): Promise<{ pid: number; stop(): void }> {
  const parent = spawn('perl', ['-e', '$|=1; my $c = fork(); if ($c == 0) { exit 0 } print "$c\\n"; sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const pid = await new Promise<number>((res) => parent.stdout!.once('data', (b: Buffer) => res(Number(b.toString().trim()))));
  for (let i = 0; i < 100 && processLife(pid) !== 'dead'; i++) await sleep(10);
  return { pid, stop: () => parent.kill('SIGKILL') };
}

describe('acquireLockFile', () => {
  it('refuses a live holder, naming its pid; takes the lock once it was released', async () => {
    const path = lockPath();
    const holder = spawn('sleep', ['30']);
    try {
      writeFileSync(path, `${holder.pid}\nstart=${processStartTime(holder.pid!)}\n`);
      await assert.rejects(acquireLockFile(path, 'the embedded database'), new RegExp(`in use by another process \\(pid ${holder.pid}\\)`));
    } finally {
      holder.kill('SIGKILL');
    }
    rmSync(path);
    const lock = await acquireLockFile(path, 'db');
    assert.equal(readFileSync(path, 'utf8'), `${process.pid}\nstart=${processStartTime('self')}\n`);
    await assert.rejects(acquireLockFile(path, 'db'), /in use by this process/);
    lock.release();
    (await acquireLockFile(path, 'db')).release();
  });

  it('takes over from a zombie holder (exited, not yet reaped)', async () => {
    const path = lockPath();
    const z = await zombie();
    try {
      assert.equal(processLife(z.pid), 'dead', 'the holder is a zombie');
      writeFileSync(path, `${z.pid}\nstart=${processStartTime(z.pid)}\n`);
      const stale: string[] = [];
      const lock = await acquireLockFile(path, 'db', { onStale: (h, life) => stale.push(`${h.pid} ${life}`) });
      assert.deepEqual(stale, [`${z.pid} dead`]);
      lock.release();
    } finally {
      z.stop();
    }
  });

  it('takes over from a pid that is gone, or reused by another process (other start time)', async () => {
    const gone = lockPath();
    writeFileSync(gone, `${2 ** 22 + 1}\nstart=1\n`);
    (await acquireLockFile(gone, 'db')).release();
    const reused = lockPath();
    // our own parent is alive, but it is not the process that wrote this lock (its start time differs)
    writeFileSync(reused, `${process.ppid}\nstart=1\n`);
    const life: string[] = [];
    (await acquireLockFile(reused, 'db', { onStale: (_, l) => life.push(l) })).release();
    assert.deepEqual(life, ['gone']);
  });

  it('a FIFO or a symbolic link in place of the lock is an error, not a hang and not deleted', async () => {
    const fifo = lockPath();
    execFileSync('mkfifo', [fifo]);
    await assert.rejects(acquireLockFile(fifo, 'db'), /is not a regular file/);
    const link = lockPath();
    symlinkSync('/etc/passwd', link);
    await assert.rejects(acquireLockFile(link, 'db'), /is a symbolic link/);
    assert.equal(readFileSync('/etc/passwd', 'utf8').length > 0, true);
  });
});
