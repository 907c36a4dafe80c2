// Reading and writing the files of cgroup directories, and the one way a group's processes are
// killed when all that is known is its directory.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { WarnLogger } from '../../infra/best-effort';
import { bestEffort } from '../../infra/best-effort';
import { pathExists } from '../../infra/fs-utils';

/** The text of a cgroup file; null when it is absent or unreadable (a controller or kernel without it). */
export async function readText(p: string): Promise<string | null> {
  return fs.readFile(p, 'utf8').then(
    (text) => text,
    () => null,
  );
}

export async function readNumber(p: string): Promise<number | null> {
  const text = await readText(p);
  if (text === null) return null;
  const n = Number(text.trim());
  return Number.isFinite(n) ? n : null;
}

/** Reads `key value` lines (cpu.stat, memory.events, memory.oom_control). */
export async function readKeyed(p: string, key: string): Promise<number | null> {
  const text = await readText(p);
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

export async function write(p: string, value: string): Promise<void> {
  await fs.writeFile(p, value);
}

/** The pids listed in a group directory's cgroup.procs (none when it cannot be read). */
export async function procsOf(dir: string): Promise<number[]> {
  const text = (await readText(path.join(dir, 'cgroup.procs'))) ?? '';
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
export async function killGroupDir(dir: string, log: WarnLogger): Promise<void> {
  const killFile = path.join(dir, 'cgroup.kill');
  if (await pathExists(killFile)) {
    await bestEffort(log, `writing ${killFile}`, () => write(killFile, '1'));
    return;
  }
  killPids(await procsOf(dir), log);
}
