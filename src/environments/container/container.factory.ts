// The container driver's entry in the driver registry (../registry.ts).

import { containerDriverConfigSchema, type ContainerDriverConfig } from '../../config/container-driver';
import type { DriverFactory } from '../registry';
import { containerCapabilities } from './capabilities';
import { ContainerDriver } from './driver';

export const containerDriverFactory: DriverFactory<ContainerDriverConfig> = {
  kind: 'CONTAINER',
  configSchema: containerDriverConfigSchema,
  capabilities: (config) => containerCapabilities(config),
  create: (config, deps) => new ContainerDriver({ ...config, logger: deps.logger }),
};
