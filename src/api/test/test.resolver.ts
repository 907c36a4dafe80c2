import { Arg, Ctx, FieldResolver, ID, Mutation, Query, Resolver, Root, Subscription } from 'type-graphql';
import type { EnvironmentView, OutputChunkView, PlanView, ResultView, TestView } from '../../views/view.types';
import { isTerminal } from '../../domain/status';
import type { ApiContext } from '../context';
import { Environment } from '../environment/environment.types';
import { ExecutionPlan } from '../plan/plan.types';
import { OutputChunk, TestCase, TestResult } from './test.types';

@Resolver(() => TestCase)
export class TestCaseResolver {
  @Query(() => TestCase, { nullable: true })
  test(@Arg('id', () => ID) id: string, @Ctx() ctx: ApiContext): Promise<TestView | null> {
    return ctx.services.tests.get(id);
  }

  @Mutation(() => TestCase)
  cancelTest(@Arg('id', () => ID) id: string, @Ctx() ctx: ApiContext): Promise<TestView> {
    return ctx.services.tests.cancel(id, ctx.caller);
  }

  @FieldResolver(() => ExecutionPlan)
  async plan(@Root() test: TestView, @Ctx() ctx: ApiContext): Promise<PlanView> {
    const plan = await ctx.loaders.plan.load(test.planId);
    if (!plan) throw new Error(`plan ${test.planId} of test ${test.id} is gone`);
    return plan;
  }

  @FieldResolver(() => Environment, { nullable: true })
  environment(@Root() test: TestView, @Ctx() ctx: ApiContext): Promise<EnvironmentView | null> | null {
    return test.environmentId ? ctx.loaders.environment.load(test.environmentId) : null;
  }

  @FieldResolver(() => TestResult, { nullable: true })
  result(@Root() test: TestView, @Ctx() ctx: ApiContext): Promise<ResultView | null> | ResultView | null {
    if (test.result !== undefined) return test.result;
    if (!isTerminal(test.status) || test.attempts === 0) return null; // a result belongs to a finished test
    return ctx.loaders.result.load(test.id);
  }

  @Subscription(() => TestCase, {
    description: "each status change of a test (of one plan, or of all); the payload carries the test's fields as they are after the change",
    subscribe: ({ args, context }) => (context as ApiContext).live.tests(args.planId ?? null),
  })
  testUpdated(@Root() test: TestView, @Arg('planId', () => ID, { nullable: true }) _planId?: string): TestView {
    return test;
  }

  @Subscription(() => OutputChunk, {
    description: 'live stdout/stderr of a running test',
    subscribe: ({ args, context }) => (context as ApiContext).live.output(String(args.testId)),
  })
  testOutput(@Root() chunk: OutputChunkView, @Arg('testId', () => ID) _testId: string): OutputChunkView {
    return chunk;
  }
}
