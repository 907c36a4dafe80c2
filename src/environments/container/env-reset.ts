// The reset of a container environment between runs (ContainerDriver.reset, once its run is stopped):
// the bundle's overlay unmounted, the work disk emptied (in place after a small test, made anew after
// a big one) or, without disks, the work and control dirs removed; a fresh sandbox-owned work dir.

import type { PhaseTimer } from '../../infra/phase-timer';
import { InfrastructureError } from '../driver';
import type { ContainerHost, EnvState } from './env-state';
import { clearInPlace, createWorkFs, destroyWorkFs, removeTree } from './work-fs';
import { unmountInputs } from './work-inputs';

/** `cgroups`: removes what runs of this environment left in cgroupfs. Throws an InfrastructureError. */
export async function resetEnvironment(host: ContainerHost, state: EnvState, phases: PhaseTimer, cgroups: () => Promise<void>): Promise<void> {
  const env = state.handle;
  const log = host.logger;
  try {
    await cgroups();
    phases.lap('reset.cgroups');
    await unmountInputs(host.inputs, state); // the bundle's overlay: what the test changed goes with the disk's content
    phases.lap('reset.inputs');
    if (state.disk) {
      // After a big test a fresh filesystem: quicker than deleting what it left, whatever its
      // size or depth. After a small one the few files go in place.
      const cleared = await clearInPlace(state.disk, state.ctlDir, (what, err) => log.info({ envId: env.id, err: err.message }, what));
      if (!cleared) {
        await destroyWorkFs(state.disk);
        await createWorkFs(state.disk);
      }
    } else {
      await removeTree(state.workDir);
      await removeTree(state.ctlDir);
    }
    phases.lap('reset.clear');
    host.makeSandboxDirSync(state.workDir);
    phases.lap('reset.work dir');
    const timings = phases.done();
    if (timings) log.info({ envId: env.id, phases: timings }, 'container reset phases');
  } catch (err) {
    log.error({ envId: env.id, err: (err as Error).message }, 'reset failed: the environment is unusable');
    throw new InfrastructureError(`cannot reset environment ${env.id}: ${(err as Error).message}`, { cause: err });
  }
}
