// The container driver behind the driver host process (what workers use): the same suite must hold.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { EnvironmentShape } from '../../src/environments/driver';
import { RemoteDriver } from '../../src/environments/remote/remote.driver';
import { containerConformanceHooks, silentLogger, TEST_IMAGE, testImageDir } from '../helpers/sandbox-env.js';
import { runDriverConformance } from './driver-conformance.js';

const shape: EnvironmentShape = { pool: 'conformance', kind: 'CONTAINER', arch: 'x86_64', cpus: 1, memoryMb: 128, image: TEST_IMAGE, pids: 64 };

runDriverConformance(
  'Remote',
  async () => {
    if (!existsSync(join(testImageDir(), TEST_IMAGE, 'rootfs'))) return { skip: `image ${TEST_IMAGE} missing in ${testImageDir()} (the container suite builds it)` };
    return new RemoteDriver('CONTAINER', { imageDir: testImageDir() }, silentLogger);
  },
  shape,
  containerConformanceHooks,
);
