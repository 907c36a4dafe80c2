// Deleting finished plans with everything they hold: their tests, runs and artifact rows, the blobs
// no other artifact references (same content, same key: kept), and the bundle no other plan uses
// (bundle.service.ts: once its grace after the last upload is over; the next pass takes it otherwise). A batch of tests per transaction with a
// yield between batches, so the API (and the embedded database, which runs on its thread) keeps
// answering while a plan of 50,000 tests goes. deletePlan does it at once for one finished plan; the
// maintenance job (maintenance.ts) for every plan past RETENTION_DAYS.

import { isUuid } from '../db/cursor';
import { isPlanFinished, type PlanStatus } from '../domain/status';
import type { BundleService } from './bundle.service';
import type { ServiceDeps } from './context';
import { UserError } from './errors';
import type { Caller } from '../domain/access';
import { checkPlanChange } from './auth/plan-access';

/** Tests deleted per transaction (with their runs and artifacts). */
const TEST_BATCH = 200;
/** Blobs judged and removed under one hold of the blob lock. */
const BLOB_BATCH = 200;
/** Old plans looked up per query. */
const PLAN_BATCH = 50;

export interface Purged {
  /** The plan row is gone (false: stopped early, or tests of it that have not ended are left). */
  planDeleted: boolean;
  tests: number;
  artifacts: number;
  blobsRemoved: number;
  /** Blobs still referenced by other artifacts (the same content elsewhere): kept. */
  blobsKept: number;
  bytesFreed: number;
  /** Bundles no plan uses any more, deleted with their files. */
  bundlesRemoved: number;
}

export type RetentionDeps = Pick<ServiceDeps, 'config' | 'logger' | 'artifacts' | 'store' | 'events' | 'now' | 'tokens'> & {
  bundles: Pick<BundleService, 'releaseUnused'>;
};

const yieldNow = () => new Promise<void>((resolve) => setImmediate(resolve));

export class RetentionService {
  constructor(private readonly d: RetentionDeps) {}

  /**
   * Deletes a finished plan now. NOT_FOUND for no such plan; a plan still queued or running (or
   * cancelled while some of its tests have not ended yet) is refused: cancel it first.
   */
  async deletePlan(id: string, caller: Caller | null = null): Promise<Purged> {
    await checkPlanChange(this.d.tokens, id, caller, 'delete');
    const state = isUuid(id) ? await this.d.artifacts.planState(id) : null;
    if (!state) throw new UserError('NOT_FOUND', `no plan with id ${id}`, { id });
    if (!isPlanFinished(state.status as PlanStatus) || state.unfinishedTests > 0) {
      const why =
        state.unfinishedTests > 0
          ? `${state.unfinishedTests} of its tests ${state.unfinishedTests === 1 ? 'is' : 'are'} still queued or running`
          : `it is ${state.status}`;
      throw new UserError('BAD_USER_INPUT', `plan ${id} cannot be deleted: ${why}; cancel it first (cancelPlan), then delete it once its tests have ended`, {
        id,
        status: state.status,
      });
    }
    const purged = await this.purge(id);
    if (!purged.planDeleted) {
      throw new UserError('BAD_USER_INPUT', `plan ${id} was not deleted: some of its tests have not ended; cancel it first (cancelPlan), then delete it once they have`, { id });
    }
    this.d.logger.info({ planId: id, ...purged }, 'plan deleted');
    return purged;
  }

  /**
   * Deletes every finished plan that finished more than RETENTION_DAYS ago (none when it is 0), oldest
   * first; stops between plans when `signal` aborts.
   */
  async expire(signal?: AbortSignal): Promise<{ plans: number } & Omit<Purged, 'planDeleted'>> {
    const total = { plans: 0, tests: 0, artifacts: 0, blobsRemoved: 0, blobsKept: 0, bytesFreed: 0, bundlesRemoved: 0 };
    if (this.d.config.retentionDays <= 0) return total;
    const cutoff = new Date(this.d.now().getTime() - this.d.config.retentionDays * 86_400_000);
    for (;;) {
      const ids = await this.d.artifacts.finishedBefore(cutoff, PLAN_BATCH);
      for (const id of ids) {
        if (signal?.aborted) return total;
        const p = await this.purge(id, signal);
        if (p.planDeleted) total.plans += 1;
        for (const k of ['tests', 'artifacts', 'blobsRemoved', 'blobsKept', 'bytesFreed', 'bundlesRemoved'] as const) total[k] += p[k];
      }
      if (ids.length < PLAN_BATCH || signal?.aborted) break;
    }
    // and every other bundle no plan uses: of plans deleted within its grace, or never used
    if (!signal?.aborted) total.bundlesRemoved += (await this.d.bundles.releaseUnused()).removed;
    if (total.plans) this.d.logger.info({ retentionDays: this.d.config.retentionDays, ...total }, 'plans past their retention deleted');
    return total;
  }

  /**
   * The plan's tests a batch at a time, then the plan; the blobs released after each batch. Aborted
   * (shutdown), it stops between batches: the plan, still finished and old, is finished by the next pass.
   */
  private async purge(planId: string, signal?: AbortSignal): Promise<Purged> {
    const out: Purged = { planDeleted: false, tests: 0, artifacts: 0, blobsRemoved: 0, blobsKept: 0, bytesFreed: 0, bundlesRemoved: 0 };
    for (;;) {
      if (signal?.aborted) return out;
      const batch = await this.d.artifacts.deleteTestBatch(planId, TEST_BATCH);
      if (batch.deleted === 0) break;
      out.tests += batch.deleted;
      out.artifacts += batch.artifacts;
      const released = await this.releaseBlobs(batch.keys);
      out.blobsRemoved += released.removed;
      out.blobsKept += released.kept;
      out.bytesFreed += released.bytes;
      await yieldNow();
    }
    const plan = await this.d.artifacts.deleteEmptyPlan(planId);
    out.planDeleted = plan.deleted;
    if (plan.bundleId) out.bundlesRemoved = (await this.d.bundles.releaseUnused([plan.bundleId])).removed;
    this.d.events.emit('system', { reason: 'plan deleted' });
    return out;
  }

  /**
   * THE HOOK for everything that stores blobs: removes from the store each of `keys` that nothing
   * references any more, keeps the others. Call it with the keys of rows just deleted. It decides under
   * the exclusive blob lock (see BLOB_LOCK in db/artifacts.repository.ts), so a blob is never removed
   * while a new row for the same content is being written.
   */
  async releaseBlobs(keys: readonly string[]): Promise<{ removed: number; kept: number; bytes: number }> {
    const r = { removed: 0, kept: 0, bytes: 0 };
    const unique = [...new Set(keys)];
    for (let i = 0; i < unique.length; i += BLOB_BATCH) {
      const part = unique.slice(i, i + BLOB_BATCH);
      const removed = await this.d.artifacts.withUnreferenced(part, async (unreferenced) => {
        let n = 0;
        for (const key of unreferenced) {
          try {
            const size = await this.d.store.remove(key);
            if (size !== null) r.bytes += size;
            n += 1;
          } catch (err) {
            // the row is gone; the blob stays until a scan finds it (logged, not fatal)
            this.d.logger.error({ key, err: (err as Error).message }, 'an unreferenced blob could not be removed from the artifact store');
          }
        }
        return n;
      });
      r.removed += removed;
      r.kept += part.length - removed;
      await yieldNow();
    }
    return r;
  }
}
