import { Field, Int, ObjectType } from 'type-graphql';
import { StatusCounts } from '../common.types';
import { EnvironmentKind, TestType } from '../enums';

@ObjectType()
export class PoolStatus {
  @Field() name!: string;
  @Field(() => EnvironmentKind) kind!: EnvironmentKind;
  @Field(() => Int) ready!: number;
  @Field(() => Int) busy!: number;
  @Field(() => Int) unhealthy!: number;
  @Field(() => Int, { description: 'how many tests the pool can run at once, over all worker hosts' }) capacity!: number;
  @Field(() => Int) queuedTests!: number;
  @Field(() => [TestType], { description: 'the test types this pool serves' }) testTypes!: TestType[];
}

@ObjectType()
export class ComponentHealth {
  @Field() name!: string;
  @Field() healthy!: boolean;
  @Field(() => String, { nullable: true }) detail!: string | null;
}

@ObjectType()
export class SystemStatus {
  @Field(() => Int, { description: 'RUNNING now' }) activeTests!: number;
  @Field(() => Int, { description: 'QUEUED now' }) queuedTests!: number;
  @Field(() => Int, { description: 'PASSED + FAILED + TIMED_OUT + ERROR + CANCELLED' }) completedTests!: number;
  @Field(() => StatusCounts) counts!: StatusCounts;
  @Field(() => [PoolStatus]) pools!: PoolStatus[];
  @Field(() => Int, { description: 'worker processes alive now' }) workers!: number;
  @Field() healthy!: boolean;
  @Field(() => [ComponentHealth], { description: 'at least: database, queue, workers, images, artifacts (the store: whether it can be used, its size)' }) components!: ComponentHealth[];
}
