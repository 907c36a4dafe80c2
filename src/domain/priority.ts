// Plan priority (higher runs first) to BullMQ priority (lower number runs first, 1..2^21).
// Every job carries a priority: BullMQ runs jobs without one before all prioritized jobs. Among equal
// priorities BullMQ keeps insertion order, which is submission order (FIFO).

export const MIN_PLAN_PRIORITY = -1000;
export const MAX_PLAN_PRIORITY = 1000;

export function queuePriority(planPriority: number): number {
  if (!Number.isInteger(planPriority) || planPriority < MIN_PLAN_PRIORITY || planPriority > MAX_PLAN_PRIORITY) {
    throw new RangeError(`plan priority ${planPriority} is outside ${MIN_PLAN_PRIORITY}..${MAX_PLAN_PRIORITY}`);
  }
  return MAX_PLAN_PRIORITY - planPriority + 1;
}
