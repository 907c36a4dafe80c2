import type { PlanView, TestView } from '../events/types';
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
