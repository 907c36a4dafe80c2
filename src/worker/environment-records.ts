// The resource managers' port wired to the database and the event bus: each state an environment
// reaches is written to its row (owned by this worker) and published as an `environment` event.

import type { Core } from '../app';
import type { EnvironmentRecords } from '../environments/environment-records';
import type { EnvironmentView } from '../views/view.types';

type Rows = Core['deps']['environments'];

export function environmentRecords(rows: Rows, o: { workerId: string; host: string; publish(view: EnvironmentView): void }): EnvironmentRecords {
  /** Each live environment's row as last written: RESETTING is published from it, not read back. */
  const last = new Map<string, EnvironmentView>();
  const wrote = (view: EnvironmentView) => {
    if (view.status === 'RETIRED') last.delete(view.id);
    else last.set(view.id, view);
    o.publish(view);
  };
  return {
    async provisioning(id, p) {
      wrote(await rows.create({ id, pool: p.name, kind: p.kind, host: o.host, workerId: o.workerId, arch: p.arch, cpus: p.cpus, memoryMb: p.memoryMb, image: p.image, tags: p.tags }));
    },
    async ready(id, testsRun) {
      wrote(await rows.update(id, { status: 'READY', currentTestId: null, testsRunIncrement: testsRun }));
    },
    async busy(id, testId, testsRun) {
      wrote(await rows.update(id, { status: 'BUSY', currentTestId: testId, testsRunIncrement: testsRun }));
    },
    async resetting(id) {
      o.publish({ ...(last.get(id) ?? (await rows.get(id))), status: 'RESETTING', currentTestId: null });
    },
    async unhealthy(id, reason, testsRun) {
      wrote(await rows.update(id, { status: 'UNHEALTHY', currentTestId: null, lastError: reason, failuresIncrement: true, testsRunIncrement: testsRun }));
    },
    async retired(id, lastError) {
      wrote(await rows.update(id, { status: 'RETIRED', currentTestId: null, ...(lastError !== undefined ? { lastError } : {}) }));
    },
  };
}
