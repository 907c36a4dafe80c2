// Reading and writing the files of cgroup directories, and the one way a group's processes are
// killed when all that is known is its directory.
//
// Synchronous: cgroupfs lives in the kernel's memory and never waits for a disk, so each call costs a
// few microseconds; the same call through fs.promises costs a thread-pool round trip and two wake-ups
// of this process (about ten times the CPU, and a scheduling delay each on a busy host: a run makes
// some forty of them). Every function here runs on cgroupfs (or procfs) paths only. Except making and
// removing a group: both take the kernel's cgroup mutex, which a process joining a group (a sandbox
// starting) holds across an RCU grace period, so they wait up to a few milliseconds: they go to the
// thread pool, all of a group's directories at once (measured: a synchronous first rmdir after a run
// blocked the driver host 1.1-1.5 ms on average at two runs in parallel).

import { existsSync, promises as fs, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { bestEffortSync, type WarnLogger } from '../../infra/best-effort';

/** The text of a cgroup file; null when it is absent or unreadable (a controller or kernel without it). */
export function readText(p: string): string | null {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return null;
  }
}

export function readNumber(p: string): number | null {
  const text = readText(p);
  if (text === null) return null;
  const n = Number(text.trim());
  return Number.isFinite(n) ? n : null;
}

/** Every `key value` line of a file (cpu.stat); null when it cannot be read. */
export function readKeyedAll(p: string): Map<string, number> | null {
  const text = readText(p);
  if (text === null) return null;
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    const n = Number(v);
    if (k && v !== undefined && Number.isFinite(n)) out.set(k, n);
  }
  return out;
}

/** Reads `key value` lines (cpu.stat, memory.events, memory.oom_control). */
export function readKeyed(p: string, key: string): number | null {
  const text = readText(p);
  if (text === null) return null;
  for (const line of text.split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k === key && v !== undefined) {
      const n = Number(v);
      return Number.isFinite(n) ? n : null;
    }
  }
  return null;
}

export function write(p: string, value: string): void {
  writeFileSync(p, value);
}

/** Does the cgroup file or directory exist? */
export function exists(p: string): boolean {
  return existsSync(p);
}

export function makeGroupDir(dir: string): Promise<void> {
  return fs.mkdir(dir).then(() => undefined);
}

export function removeGroupDir(dir: string): Promise<void> {
  return fs.rmdir(dir);
}

/** The pids listed in a group directory's cgroup.procs (none when it cannot be read). */
export function procsOf(dir: string): number[] {
  const text = readText(path.join(dir, 'cgroup.procs')) ?? '';
  return text
    .split('\n')
    .filter(Boolean)
    .map(Number)
    .filter((n) => Number.isInteger(n) && n > 0);
}

/** SIGKILLs each pid; one that is already gone is no loss, any other failure is logged. */
export function killPids(pids: number[], log: WarnLogger): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') log.warn({ pid, err: (err as Error).message }, 'killing a process of a cgroup failed (ignored)');
    }
  }
}

/**
 * Kills every process of one group directory, once, without waiting: `cgroup.kill` where the kernel
 * has it (v2, the unified tree of a hybrid host), else SIGKILL to each pid of its cgroup.procs.
 */
export function killGroupDir(dir: string, log: WarnLogger): void {
  const killFile = path.join(dir, 'cgroup.kill');
  if (existsSync(killFile)) {
    bestEffortSync(log, `writing ${killFile}`, () => write(killFile, '1'));
    return;
  }
  killPids(procsOf(dir), log);
}
