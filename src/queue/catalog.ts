// The job catalog: each job is a name plus a schema; the payload is checked when queued and when taken.
import { z } from 'zod';

export const RUN_TEST = 'run-test';

export const runTestPayload = z.object({
  testId: z.string().uuid(),
  planId: z.string().uuid(),
});
export type RunTestPayload = z.infer<typeof runTestPayload>;

export class InvalidJobError extends Error {
  override readonly name = 'InvalidJobError';
}

export function parseRunTest(data: unknown): RunTestPayload {
  const parsed = runTestPayload.safeParse(data);
  if (!parsed.success) throw new InvalidJobError(`invalid ${RUN_TEST} payload: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

/** One BullMQ queue per pool. */
export function queueName(pool: string): string {
  return `tests.${pool}`;
}
