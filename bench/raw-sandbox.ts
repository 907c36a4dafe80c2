// Runs raw-sandbox-child.ts (the physical limit of the container stack) in a fresh small process, as
// the driver host is one, and returns its figure.
import { fork } from 'node:child_process';
import { join } from 'node:path';
import type { RawSandboxOptions } from './raw-sandbox-child';

export type { RawSandboxOptions };

export interface SandboxLoopResult {
  ms: number;
  perSecond: number;
  /** CPU time per run (ms): of the process that starts the sandboxes, and of the sandboxes (their cgroups). */
  hostCpuMs: number;
  sandboxCpuMs: number;
}

export async function rawSandboxRuns(o: RawSandboxOptions): Promise<SandboxLoopResult> {
  const child = fork(join(__dirname, 'raw-sandbox-child.js'), [], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', RAW_SANDBOX_OPTIONS: JSON.stringify(o) },
    execArgv: [],
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
  });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  await new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', () => resolve());
  });
  const line = out.trim().split('\n').pop() ?? '';
  let r: { ms?: number; runs?: number; hostCpuMs?: number; sandboxCpuMs?: number; error?: string };
  try {
    r = JSON.parse(line);
  } catch {
    throw new Error(`raw sandbox loop printed no figure: ${out.slice(-500) || 'nothing'}`);
  }
  if (r.error || r.ms === undefined) throw new Error(`raw sandbox loop failed: ${r.error}`);
  return { ms: r.ms, perSecond: (o.runs / r.ms) * 1000, hostCpuMs: (r.hostCpuMs ?? 0) / o.runs, sandboxCpuMs: (r.sandboxCpuMs ?? 0) / o.runs };
}
