import { mayChangePlan, type Caller } from '../../domain/access';
import type { TokensRepository } from '../../db/tokens.repository';
import { isUuid } from '../../db/cursor';
import { UserError } from '../errors';

/**
 * Refuses (FORBIDDEN) a caller that may not cancel or delete this plan: a viewer, or a submitter whose
 * plan it is not. An unknown plan passes: the operation itself answers NOT_FOUND.
 */
export async function checkPlanChange(tokens: TokensRepository, planId: string, caller: Caller | null, what: string): Promise<void> {
  if (caller === null || caller.role === 'ADMIN' || !isUuid(planId)) return;
  const owner = await tokens.planOwner(planId);
  if (owner === undefined || mayChangePlan(caller, owner)) return;
  throw new UserError('FORBIDDEN', `token "${caller.name}" may not ${what} plan ${planId}: it was submitted by another token (only its submitter or an ADMIN may)`, { id: planId });
}
