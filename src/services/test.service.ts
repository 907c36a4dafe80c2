import { isTerminal } from '../domain/status';
import type { TestStatus } from '../domain/status';
import { isUuid } from '../db/cursor';
import type { Page } from '../db/plans.repository';
import type { ResultView, TestView } from '../views/view.types';
import type { ServiceDeps } from './context';
import { UserError } from './errors';
import { checkCursor, pageSize } from './plan.service';
import { cancelRunning, publishTestChanges } from './transitions';
import { bestEffort } from '../infra/best-effort';
import type { Caller } from '../domain/access';
import { checkPlanChange } from './auth/plan-access';

/** Artifacts one query may list (the default of `first`). */
export const MAX_ARTIFACT_PAGE = 1000;

export class TestService {
  constructor(private readonly d: ServiceDeps) {}

  async get(id: string): Promise<TestView | null> {
    return isUuid(id) ? this.d.tests.get(id) : null;
  }

  /** Tests by id, in one query. */
  async byIds(ids: readonly string[]): Promise<Map<string, TestView>> {
    return this.d.tests.byIds(ids.filter(isUuid));
  }

  async listOfPlan(planId: string, first: number | null | undefined, after: string | null | undefined, status: TestStatus | null | undefined): Promise<Page<TestView>> {
    return this.d.tests.listByPlan(planId, pageSize(first), checkCursor(after), status ?? null);
  }

  /** Results of the latest finished attempt, for many tests in one query. */
  async results(ids: readonly string[]): Promise<Map<string, ResultView>> {
    return this.d.tests.results(ids);
  }

  /**
   * `first` artifacts of a result from `offset`, in name order: from those the result carries when
   * they cover the range, else from the database.
   */
  async artifacts(result: ResultView, first: number | null | undefined, offset: number | null | undefined): Promise<ResultView['artifacts']> {
    const n = first ?? MAX_ARTIFACT_PAGE;
    const from = offset ?? 0;
    if (!Number.isInteger(n) || n < 0 || n > MAX_ARTIFACT_PAGE) throw new UserError('BAD_USER_INPUT', `first must be from 0 to ${MAX_ARTIFACT_PAGE} (got ${n})`, { field: 'first' });
    if (!Number.isInteger(from) || from < 0) throw new UserError('BAD_USER_INPUT', `offset must be 0 or more (got ${from})`, { field: 'offset' });
    const carried = result.artifacts;
    if (from + n <= carried.length || carried.length >= result.artifactCount) return carried.slice(from, from + n);
    if (from >= result.artifactCount || n === 0) return [];
    return this.d.tests.artifactsOfRun(result.runId, n, from);
  }

  /** QUEUED: cancelled and removed from its queue. RUNNING: cancelled, and its worker kills it. Finished: unchanged. */
  async cancel(id: string, caller: Caller | null = null): Promise<TestView> {
    const current = isUuid(id) ? await this.d.tests.get(id) : null;
    if (!current) throw new UserError('NOT_FOUND', `no test with id ${id}`, { id });
    await checkPlanChange(this.d.tokens, current.planId, caller, 'cancel a test of');
    if (isTerminal(current.status)) return current;
    let changed = await this.d.tests.transition(id, { from: ['QUEUED'] }, { status: 'CANCELLED', finishedAt: this.d.now() });
    if (changed) {
      const removed = changed;
      // a job left behind is harmless: the worker that takes it finds the test CANCELLED and skips it
      await bestEffort(this.d.logger, `removing the job of cancelled test ${id} from its queue`, () => this.d.queues.remove(removed.pool, id));
    }
    else changed = await cancelRunning(this.d, id);
    if (!changed) return (await this.d.tests.get(id)) as TestView; // finished meanwhile
    await publishTestChanges(this.d, changed.planId, [changed]);
    this.d.logger.info({ testId: id, planId: changed.planId, from: current.status }, 'test cancelled');
    return changed;
  }
}
