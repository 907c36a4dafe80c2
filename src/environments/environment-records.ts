// The port through which the resource manager records its environments: one method per state an
// environment reaches. The worker wires it to the database and the event bus (worker/environment-records.ts);
// a unit test wires a fake, so the manager is tested without a database.

import type { PoolDefinition } from '../config/pools';

export interface EnvironmentRecords {
  /** A new environment of this pool is being provisioned: its row is created (PROVISIONING). */
  provisioning(id: string, pool: PoolDefinition): Promise<void>;
  /** READY for a test; `testsRun` tests ran on it since its count was last written. */
  ready(id: string, testsRun: number): Promise<void>;
  /** BUSY running `testId`; `testsRun` as for ready. */
  busy(id: string, testId: string, testsRun: number): Promise<void>;
  /** Being reset after a test: published only, never written (one row update per test, not three). */
  resetting(id: string): Promise<void>;
  /** Broken: UNHEALTHY with the reason, one more failure counted. */
  unhealthy(id: string, reason: string, testsRun: number): Promise<void>;
  /** Gone for good (destroyed, or never provisioned: `lastError` says why). */
  retired(id: string, lastError?: string): Promise<void>;
}
