/**
 * The CPUs pinned for slot `slot` of a pool whose environments have `cpusPerEnv` CPUs each, on a host with
 * `hostCpus`: counted down from the last CPU so dedicated slots stay clear of CPU 0, where the host and
 * the orchestrator itself mostly run. Pure.
 */
export function dedicatedCpuSet(slot: number, cpusPerEnv: number, hostCpus: number): number[] {
  const n = Math.min(cpusPerEnv, hostCpus);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((((hostCpus - 1 - (slot * n + i)) % hostCpus) + hostCpus) % hostCpus);
  return out.sort((a, b) => a - b);
}
