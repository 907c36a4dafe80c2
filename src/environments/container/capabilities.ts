// What the container driver can do, from its configuration and the user it runs as.

import type { ContainerDriverConfig } from '../../config/container-driver';
import type { DriverCapabilities } from '../driver';

export function containerCapabilities(config: Pick<ContainerDriverConfig, 'disableCgroups'>, uid = process.getuid?.()): DriverCapabilities {
  const cgroups = !config.disableCgroups;
  return {
    // a loop-mounted ext4 file per environment: mounting needs root
    diskLimit: uid === 0,
    resourceLimits: cgroups,
    dedicatedCpus: cgroups,
    // user/system CPU from the run's cgroup; context switches and storage bytes from the runner
    detailedMetrics: cgroups,
    services: true,
    coreDumps: true,
  };
}
