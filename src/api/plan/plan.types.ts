import { Field, ID, Int, ObjectType } from 'type-graphql';
import { PageInfo, StatusCounts } from '../common.types';
import { PlanStatus } from '../enums';
import { DateTimeScalar } from '../scalars';

/** Fields read from a PlanView; counts and tests are resolved by PlanResolver. */
@ObjectType()
export class ExecutionPlan {
  @Field(() => ID) id!: string;
  @Field() name!: string;
  @Field(() => Int) priority!: number;
  @Field(() => PlanStatus) status!: PlanStatus;
  @Field(() => DateTimeScalar) createdAt!: string;
  @Field(() => DateTimeScalar, { nullable: true }) startedAt!: string | null;
  @Field(() => DateTimeScalar, { nullable: true }) finishedAt!: string | null;
  @Field(() => String, { nullable: true, description: 'the bundle id it was submitted with' }) bundle!: string | null;
  @Field(() => String, { nullable: true, description: 'name of the token that submitted it; null when authentication is off' }) submittedBy!: string | null;
}

@ObjectType()
export class ExecutionPlanConnection {
  @Field(() => [ExecutionPlan]) nodes!: ExecutionPlan[];
  @Field(() => PageInfo) pageInfo!: PageInfo;
  @Field(() => Int) totalCount!: number;
}

export { StatusCounts };
