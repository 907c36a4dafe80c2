// Per-instance ownership of host resources, so a crashed process's leftovers can be found and swept.
//
// Each ContainerDriver instance keeps its cgroups under `<cgroupParent>/<instance>/` and its state
// dirs under `<stateRoot>/<instance>/`, where <instance> is
//
//   p<pid>.<starttime>.<pidns>.<random>
//
// pid and starttime (field 22 of /proc/<pid>/stat, clock ticks since boot) identify the owning process
// even after its pid is reused; pidns is the inode of its pid namespace (/proc/self/ns/pid), since a
// pid means nothing in another namespace; random tells apart several drivers of one process.
// Several processes share the parents: a sweep removes only instances whose owner is provably dead
// (same pid namespace, and no process with that pid and start time), never a live or foreign one.

import { randomBytes } from 'node:crypto';
import { readlinkSync } from 'node:fs';
import { processStartTime } from '../../infra/process-utils';

export const INSTANCE_NAME = /^p(\d+)\.(\d+)\.(\d+)\.([0-9a-f]{8})$/;

export interface InstanceOwner {
  pid: number;
  startTime: string;
  pidNs: string;
}

/** Inode of this process's pid namespace ('0' when it cannot be read). */
export function selfPidNamespace(): string {
  try {
    return /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))?.[1] ?? '0';
  } catch {
    return '0';
  }
}

let self: InstanceOwner | null = null;
function selfOwner(): InstanceOwner {
  self ??= { pid: process.pid, startTime: processStartTime('self') ?? '0', pidNs: selfPidNamespace() };
  return self;
}

/** A fresh instance name owned by this process. */
export function newInstanceName(): string {
  const o = selfOwner();
  return `p${o.pid}.${o.startTime}.${o.pidNs}.${randomBytes(4).toString('hex')}`;
}

export function parseInstanceName(name: string): InstanceOwner | null {
  const m = INSTANCE_NAME.exec(name);
  return m ? { pid: Number(m[1]), startTime: m[2], pidNs: m[3] } : null;
}

/**
 * 'dead': the owner is gone (sweepable). 'alive': its process still runs (same pid and start time).
 * 'foreign': another pid namespace, where a pid cannot be checked (kept). 'not-instance': not our name.
 */
export function instanceStatus(name: string): 'dead' | 'alive' | 'foreign' | 'not-instance' {
  const owner = parseInstanceName(name);
  if (!owner) return 'not-instance';
  const me = selfOwner();
  if (owner.pidNs !== me.pidNs) return 'foreign';
  if (owner.pid === me.pid) return owner.startTime === me.startTime ? 'alive' : 'dead';
  const start = processStartTime(owner.pid) ?? null;
  return start !== null && start === owner.startTime ? 'alive' : 'dead';
}
