import { Field, ID, Int, ObjectType } from 'type-graphql';
import { EnvironmentKind, EnvironmentStatus } from '../enums';

/** Fields read from an EnvironmentView; currentTest and utilization are resolved by EnvironmentResolver. */
@ObjectType()
export class Environment {
  @Field(() => ID) id!: string;
  @Field() pool!: string;
  @Field(() => EnvironmentKind) kind!: EnvironmentKind;
  @Field(() => EnvironmentStatus) status!: EnvironmentStatus;
  @Field() host!: string;
  @Field() arch!: string;
  @Field(() => Int) cpus!: number;
  @Field(() => Int) memoryMb!: number;
  @Field(() => String, { nullable: true }) image!: string | null;
  @Field(() => [String]) tags!: string[];
  @Field(() => Int) testsRun!: number;
  @Field(() => Int) failures!: number;
}
