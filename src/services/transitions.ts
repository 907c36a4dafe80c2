import type { PlanView, TestView } from '../views/view.types';
import type { ServiceDeps } from './context';

type Deps = Pick<ServiceDeps, 'plans' | 'tests' | 'events' | 'now'>;

/**
 * After tests of one plan changed (each change already committed): publishes each test, recomputes the
 * plan under its lock and publishes it, and nudges systemStatus. Returns the plan as it is now.
 */
export async function publishTestChanges(d: Deps, planId: string, changed: readonly TestView[]): Promise<PlanView | null> {
  for (const t of changed) d.events.emit('test', t);
  const plan = await d.plans.refresh(planId);
  if (plan) d.events.emit('plan', plan);
  d.events.emit('system', { reason: 'tests changed' });
  return plan;
}

/** RUNNING → CANCELLED now, and every worker is told to kill it; its late result is refused by the fence. */
export async function cancelRunning(d: Deps, testId: string): Promise<TestView | null> {
  const t = await d.tests.transition(testId, { from: ['RUNNING'] }, { status: 'CANCELLED', finishedAt: d.now() });
  if (!t) return null;
  await d.events.publish('cancel', { testId });
  return t;
}

/**
 * A worker's plan refreshes, coalesced per plan (at most one per `delayMs`, always one after the last
 * change): a plan of a thousand tests needs no two thousand refreshes, and its dashboards no two
 * thousand planUpdated events. Should the process die before a pending refresh, the reconciler
 * refreshes every unfinished plan whose tests have all finished.
 */
export class PlanRefresher {
  private readonly pending = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly d: Deps,
    private readonly onError: (err: Error, planId: string) => void,
    private readonly delayMs = 200,
  ) {}

  soon(planId: string): void {
    if (this.pending.has(planId)) return;
    this.pending.set(
      planId,
      setTimeout(() => void this.now(planId), this.delayMs),
    );
  }

  async now(planId: string): Promise<void> {
    const timer = this.pending.get(planId);
    if (timer) clearTimeout(timer);
    this.pending.delete(planId);
    try {
      const plan = await this.d.plans.refresh(planId);
      if (plan) this.d.events.emit('plan', plan);
      this.d.events.emit('system', { reason: 'tests changed' });
    } catch (err) {
      this.onError(err as Error, planId);
    }
  }

  /** Runs every pending refresh now. */
  async flush(): Promise<void> {
    await Promise.all([...this.pending.keys()].map((id) => this.now(id)));
  }
}
