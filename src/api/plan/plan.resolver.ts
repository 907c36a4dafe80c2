import { Arg, Args, ArgsType, Ctx, Field, FieldResolver, ID, Int, Mutation, Query, Resolver, Root, Subscription } from 'type-graphql';
import type { PlanView } from '../../views/view.types';
import { StatusCounts } from '../common.types';
import type { ApiContext } from '../context';
import { toGraphCounts } from '../counts';
import { PlanStatus, TestStatus } from '../enums';
import { TestCaseConnection } from '../test/test.types';
import { SubmitPlanInput } from './plan.input';
import { ExecutionPlan, ExecutionPlanConnection } from './plan.types';

@ArgsType()
class PlansArgs {
  @Field(() => Int, { nullable: true }) first?: number | null;
  @Field(() => String, { nullable: true }) after?: string | null;
  @Field(() => PlanStatus, { nullable: true }) status?: PlanStatus | null;
}

@ArgsType()
class TestsArgs {
  @Field(() => Int, { nullable: true }) first?: number | null;
  @Field(() => String, { nullable: true }) after?: string | null;
  @Field(() => TestStatus, { nullable: true }) status?: TestStatus | null;
}

const connection = <T>(page: { nodes: T[]; hasNextPage: boolean; endCursor: string | null; totalCount: number }) => ({
  nodes: page.nodes,
  pageInfo: { hasNextPage: page.hasNextPage, endCursor: page.endCursor },
  totalCount: page.totalCount,
});

@Resolver(() => ExecutionPlan)
export class PlanResolver {
  @Query(() => ExecutionPlan, { nullable: true })
  plan(@Arg('id', () => ID) id: string, @Ctx() ctx: ApiContext): Promise<PlanView | null> {
    return ctx.services.plans.get(id);
  }

  @Query(() => ExecutionPlanConnection)
  async plans(@Args() args: PlansArgs, @Ctx() ctx: ApiContext) {
    return connection(await ctx.services.plans.list(args.first, args.after, args.status));
  }

  @Mutation(() => ExecutionPlan)
  submitPlan(@Arg('input', () => SubmitPlanInput) input: SubmitPlanInput, @Ctx() ctx: ApiContext): Promise<PlanView> {
    return ctx.services.plans.submit(input, ctx.caller);
  }

  @Mutation(() => ExecutionPlan)
  cancelPlan(@Arg('id', () => ID) id: string, @Ctx() ctx: ApiContext): Promise<PlanView> {
    return ctx.services.plans.cancel(id, ctx.caller);
  }

  @Mutation(() => Boolean, {
    description: 'deletes a finished plan with its tests, runs and artifacts (a blob another artifact shares is kept); a queued or running plan is refused: cancel it first',
  })
  async deletePlan(@Arg('id', () => ID) id: string, @Ctx() ctx: ApiContext): Promise<boolean> {
    await ctx.services.retention.deletePlan(id, ctx.caller);
    return true;
  }

  @FieldResolver(() => StatusCounts)
  counts(@Root() plan: PlanView): StatusCounts {
    return toGraphCounts(plan.counts);
  }

  @FieldResolver(() => TestCaseConnection)
  async tests(@Root() plan: PlanView, @Args() args: TestsArgs, @Ctx() ctx: ApiContext) {
    return connection(await ctx.services.tests.listOfPlan(plan.id, args.first, args.after, args.status));
  }

  @Subscription(() => ExecutionPlan, {
    description: "each change of a plan's status or counts",
    subscribe: ({ args, context }) => (context as ApiContext).live.plans(args.id ?? null),
  })
  planUpdated(@Root() plan: PlanView, @Arg('id', () => ID, { nullable: true }) _id?: string): PlanView {
    return plan;
  }
}
