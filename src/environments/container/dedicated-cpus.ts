// A performance run's CPUs, reserved host-wide before its sandbox starts (cgroups/cpu-reservations.ts):
// the run waits while they are taken, and its environment can still be reset or destroyed meanwhile.

import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { CpuReservations, type CpuReservation } from '../cgroups/cpu-reservations';
import type { CgroupLayout } from '../cgroups/layout';
import { InfrastructureError, type RunSpec } from '../driver';
import type { ContainerHost, EnvState } from './env-state';
import type { DriverLogger } from './image';
import { prepareSecureDir } from './sandbox-user';
import { onAbort } from '../../infra/abort';

/** After this long a waiting run says so in the log, naming who holds the CPUs. */
const LOG_WAIT_AFTER_MS = 1000;

/**
 * Reserves spec.dedicatedCpus CPUs for the run `tag`. `aborted`: the run was aborted (or its
 * environment reset) while it waited. A reservation of null: none asked for, none possible (no
 * cgroups, a one-CPU host).
 */
export async function reserveDedicatedCpus(
  host: ContainerHost,
  state: EnvState,
  spec: RunSpec,
  tag: string,
): Promise<{ reservation: CpuReservation | null; aborted: boolean }> {
  const pending = spec.dedicatedCpus ? host.cpuReservations() : null;
  if (!pending) return { reservation: null, aborted: false };
  let reservations: CpuReservations;
  try {
    reservations = await pending;
  } catch (err) {
    throw new InfrastructureError(`cannot reserve dedicated CPUs: ${(err as Error).message}`, { cause: err });
  }
  const stop = new AbortController();
  const offAbort = onAbort(spec.signal, () => stop.abort(new Error('aborted')));
  const t0 = performance.now();
  let logged = false;
  const waiting = reservations.reserve(spec.dedicatedCpus!, tag, stop.signal, (holders) => {
    if (logged || performance.now() - t0 < LOG_WAIT_AFTER_MS) return;
    logged = true;
    host.logger.info(
      { envId: state.handle.id, testId: spec.testId, cpus: spec.dedicatedCpus, heldBy: holders.map((h) => h.tag ?? `pid ${h.pid}`) },
      'waiting for dedicated CPUs: other performance tests hold them',
    );
  });
  state.active = {
    cgroup: null,
    startedAt: t0,
    lastCpu: null,
    abort: () => stop.abort(new Error('the environment is reset')),
    done: waiting.catch(() => undefined),
  };
  try {
    const reservation = await waiting;
    if (logged) host.logger.info({ envId: state.handle.id, testId: spec.testId, cpus: reservation?.cpus, waitedMs: Math.round(performance.now() - t0) }, 'dedicated CPUs reserved');
    return { reservation, aborted: false };
  } catch (err) {
    if (stop.signal.aborted) return { reservation: null, aborted: true };
    throw new InfrastructureError(`cannot reserve dedicated CPUs: ${(err as Error).message}`, { cause: err });
  } finally {
    offAbort();
    state.active = null;
  }
}

/** Where CPU reservations are kept when the configuration names no place: one directory per host (and user). */
export function defaultCpuLockDir(): string {
  const uid = process.getuid?.();
  return uid === 0 ? '/run/test-orchestrator/cpus' : path.join(os.tmpdir(), `test-orchestrator-${uid ?? 'user'}`, 'cpus');
}

/**
 * The driver's CPU reservations: their lock dir made (root-owned and not writable by others when
 * `secure`: the driver runs as root), the shared cpuset group made and brought up to date.
 */
export async function prepareCpuReservations(o: { layout: CgroupLayout; cgroupBase: string; lockDir: string; secure: boolean; log: DriverLogger }): Promise<CpuReservations> {
  if (o.secure) await prepareSecureDir(o.lockDir);
  else await fs.mkdir(o.lockDir, { recursive: true, mode: 0o700 });
  const reservations = new CpuReservations({ layout: o.layout, cgroupBase: o.cgroupBase, lockDir: o.lockDir, log: o.log });
  await reservations.prepare();
  return reservations;
}
