// The container driver's health check: the image is there and a sandbox runs /bin/true.

import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { bestEffort } from '../../infra/best-effort';
import type { HealthStatus } from '../driver';
import { buildBwrapArgs } from './bwrap-args';
import type { ContainerHandle, ContainerHost } from './env-state';
import { checkImage } from './image';

const PROBE_TIMEOUT_MS = 10_000;

/** Runs /bin/true in a throw-away sandbox beside the environment's work dir; says why when it fails. */
export async function healthProbe(host: ContainerHost, env: ContainerHandle): Promise<HealthStatus> {
  const image = await checkImage(host.imageDir, env.shape.image);
  if (!image.ok) return { ok: false, reason: image.problem };
  const probeDir = path.join(env.stateDir, 'health');
  try {
    await fs.rm(probeDir, { recursive: true, force: true });
    await host.makeSandboxDir(probeDir);
    const args = buildBwrapArgs({ rootfs: image.paths.rootfs, workDir: probeDir, ctlDir: probeDir, env: {}, command: ['/bin/true'] });
    return await new Promise<HealthStatus>((resolve) => {
      const [cmd, ...rest] = [...host.dropPrivileges(), host.bwrapPath, ...args];
      const child = spawn(cmd, rest, { stdio: 'ignore', env: {}, cwd: '/', timeout: PROBE_TIMEOUT_MS, killSignal: 'SIGKILL' });
      child.once('error', (err) => resolve({ ok: false, reason: `cannot start a sandbox (${cmd}): ${err.message}` }));
      child.once('exit', (code, signal) =>
        resolve(code === 0 ? { ok: true } : { ok: false, reason: `a sandbox did not run /bin/true (${signal ?? `exit code ${code}`})` }),
      );
    });
  } finally {
    await bestEffort(host.logger, 'removing the health probe dir', () => fs.rm(probeDir, { recursive: true, force: true }));
  }
}
