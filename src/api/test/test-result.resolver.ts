import { Arg, Ctx, FieldResolver, Int, Resolver, Root } from 'type-graphql';
import type { ArtifactView, ResultView } from '../../views/view.types';
import type { ApiContext } from '../context';
import { Artifact, TestResult } from './test.types';

@Resolver(() => TestResult)
export class TestResultResolver {
  @FieldResolver(() => [Artifact], { description: 'the artifacts in name order, a page at a time (at most 1000; artifactCount says how many there are)' })
  artifacts(
    @Root() result: ResultView,
    @Ctx() ctx: ApiContext,
    @Arg('first', () => Int, { nullable: true, description: 'at most 1000; default 1000' }) first?: number | null,
    @Arg('offset', () => Int, { nullable: true, description: 'artifacts skipped; default 0' }) offset?: number | null,
  ): Promise<ArtifactView[]> {
    return ctx.services.tests.artifacts(result, first, offset);
  }
}
