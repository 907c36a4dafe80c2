// The container driver alone, as a worker runs it (a RemoteDriver: the driver in a driver host process),
// `runs` trivial tests at `concurrency`, each run then reset; optionally with the driver's phase
// timings (the `phaseTimings` option: each run's and reset's phases, in its log lines) gathered.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EnvironmentShape, RunImage, RunSpec } from '../src/environments/driver';
import { RemoteDriver } from '../src/environments/remote/remote.driver';
import { resolveImage } from '../src/images/store';
import { now } from './bench-kit';

export const BENCH_SHAPE: EnvironmentShape = { pool: 'container', kind: 'CONTAINER', arch: 'x86_64', cpus: 1, memoryMb: 256, image: 'debian-bookworm', pids: 64 };

/** Per span, every sample (ms); spans named `run.*` and `reset.*` by the driver, `ipc.*` here. */
export type Phases = Map<string, number[]>;

export interface DriverDirectResult {
  ms: number;
  perSecond: number;
  /** CPU time per run (ms): of the driver host process, and of the sandboxes (RunOutcome.cpuTimeMs, their cgroups). */
  hostCpuMs: number;
  sandboxCpuMs: number;
  phases: Phases;
}

/** utime + stime of a process (ms), from /proc (clock ticks: USER_HZ 100). */
function processCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
}

export async function driverDirect(
  imageDir: string,
  o: { runs: number; concurrency: number; phases?: boolean; script?: string; /** an unpacked bundle every run starts with (RunSpec.inputs) */ bundleDir?: string },
): Promise<DriverDirectResult> {
  const scratch = mkdtempSync(join(tmpdir(), 'orch-bench-driver-'));
  const phases: Phases = new Map();
  const add = (name: string, ms: number) => {
    let list = phases.get(name);
    if (!list) phases.set(name, (list = []));
    list.push(ms);
  };
  // what the driver logs with phaseTimings: { phases: { name: ms } } on 'container run finished' and 'container reset'
  const collect = (obj: object) => {
    const p = (obj as { phases?: Record<string, number> }).phases;
    if (p) for (const [k, v] of Object.entries(p)) add(k, v);
  };
  const logger = { info: collect, warn() {}, error() {} };
  // the driver as a worker runs it (in a driver host process): forking from this process, which has
  // held databases, would make the driver alone look slower than it is
  const driver = new RemoteDriver('CONTAINER', { imageDir, ...(o.phases ? { phaseTimings: true } : {}) }, logger);
  const resolved = await resolveImage(imageDir, BENCH_SHAPE.image);
  // the image version as a worker passes it (its rootfs, not the legacy layout)
  const image: RunImage | undefined = resolved ? { name: resolved.name, digest: resolved.digest, rootfs: resolved.rootfs } : undefined;
  try {
    await driver.preflight(BENCH_SHAPE);
    const envs = await Promise.all(Array.from({ length: o.concurrency }, () => driver.provision(randomUUID(), BENCH_SHAPE)));
    let next = 0;
    let sandboxCpuMs = 0;
    const hostPid = driver.hostPid!;
    const cpu0 = processCpuMs(hostPid);
    const t0 = now();
    await Promise.all(
      envs.map(async (env) => {
        while (next < o.runs) {
          next++;
          const spec: RunSpec = {
            testId: randomUUID(), attempt: 1, script: o.script ?? 'true', image, env: {}, timeoutMs: 60_000, services: [], artifactPaths: [],
            artifactDir: join(scratch, 'a'), maxOutputBytes: 1 << 20, ...(o.bundleDir ? { inputs: { bundleDir: o.bundleDir, files: [] } } : {}),
          };
          const r0 = now();
          const outcome = await driver.run(env, spec);
          add('ipc.run call', now() - r0);
          if (outcome.exitCode !== 0) throw new Error(`direct run failed: ${JSON.stringify(outcome).slice(0, 300)}`);
          sandboxCpuMs += outcome.cpuTimeMs ?? 0;
          const s0 = now();
          await driver.reset(env);
          add('ipc.reset call', now() - s0);
        }
      }),
    );
    const ms = now() - t0;
    const hostCpuMs = processCpuMs(hostPid) - cpu0;
    await Promise.all(envs.map((e) => driver.destroy(e)));
    return { ms, perSecond: (o.runs / ms) * 1000, hostCpuMs: hostCpuMs / o.runs, sandboxCpuMs: sandboxCpuMs / o.runs, phases };
  } finally {
    await driver.close();
    rmSync(scratch, { recursive: true, force: true });
  }
}
