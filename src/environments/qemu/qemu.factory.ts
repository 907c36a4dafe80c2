// The QEMU driver's entry in the driver registry (../registry.ts).

import { qemuDriverConfigSchema, type QemuDriverConfig } from '../../config/qemu-driver';
import type { DriverFactory } from '../registry';
import { QemuDriver, qemuCapabilities } from './driver';

export const qemuDriverFactory: DriverFactory<QemuDriverConfig> = {
  kind: 'QEMU',
  configSchema: qemuDriverConfigSchema,
  capabilities: () => qemuCapabilities(),
  create: (config, deps) => new QemuDriver({ ...config, logger: deps.logger }),
};
