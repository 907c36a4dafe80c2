import { Arg, Ctx, FieldResolver, Query, Resolver, Root, Subscription } from 'type-graphql';
import type { EnvironmentView, TestView } from '../../views/view.types';
import { ResourceUsage } from '../common.types';
import type { ApiContext } from '../context';
import { EnvironmentStatus } from '../enums';
import { TestCase } from '../test/test.types';
import { Environment } from './environment.types';

@Resolver(() => Environment)
export class EnvironmentResolver {
  @Query(() => [Environment])
  environments(
    @Arg('pool', () => String, { nullable: true }) pool: string | null,
    @Arg('status', () => EnvironmentStatus, { nullable: true }) status: EnvironmentStatus | null,
    @Ctx() ctx: ApiContext,
  ): Promise<EnvironmentView[]> {
    return ctx.services.environments.list(pool, status);
  }

  @FieldResolver(() => TestCase, { nullable: true })
  currentTest(@Root() env: EnvironmentView, @Ctx() ctx: ApiContext): Promise<TestView | null> | null {
    return env.currentTestId ? ctx.loaders.test.load(env.currentTestId) : null;
  }

  @FieldResolver(() => ResourceUsage, { nullable: true, description: 'live use while it runs a test (reported every few seconds); null when idle' })
  utilization(@Root() env: EnvironmentView, @Ctx() ctx: ApiContext): Promise<ResourceUsage | null> | null {
    return env.status === 'BUSY' ? ctx.loaders.utilization.load(env.id) : null;
  }

  @Subscription(() => Environment, {
    subscribe: ({ args, context }) => (context as ApiContext).live.environments(args.pool ?? null),
  })
  environmentUpdated(@Root() env: EnvironmentView, @Arg('pool', () => String, { nullable: true }) _pool?: string): EnvironmentView {
    return env;
  }
}
