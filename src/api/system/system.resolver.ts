import { Ctx, Query, Resolver, Root, Subscription } from 'type-graphql';
import type { SystemStatusView } from '../../services/status.service';
import type { ApiContext } from '../context';
import { toGraphCounts } from '../counts';
import { SystemStatus } from './system.types';

export function toGraphStatus(s: SystemStatusView): SystemStatus {
  return { ...s, counts: toGraphCounts(s.counts) } as unknown as SystemStatus;
}

@Resolver(() => SystemStatus)
export class SystemResolver {
  @Query(() => SystemStatus)
  async systemStatus(@Ctx() ctx: ApiContext): Promise<SystemStatus> {
    return toGraphStatus(await ctx.services.status.systemStatus());
  }

  @Subscription(() => SystemStatus, {
    description: 'the current state at once on subscribe, then on every change, coalesced to at most ~10 per second',
    subscribe: ({ context }) => (context as ApiContext).live.systemStatus(),
  })
  systemStatusUpdated(@Root() status: SystemStatusView): SystemStatus {
    return toGraphStatus(status);
  }
}
