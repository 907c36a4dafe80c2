import { Field, Float, Int, ObjectType } from 'type-graphql';

@ObjectType()
export class PageInfo {
  @Field() hasNextPage!: boolean;
  @Field(() => String, { nullable: true }) endCursor!: string | null;
}

@ObjectType()
export class StatusCounts {
  @Field(() => Int) queued!: number;
  @Field(() => Int) running!: number;
  @Field(() => Int) passed!: number;
  @Field(() => Int) failed!: number;
  @Field(() => Int) timedOut!: number;
  @Field(() => Int) error!: number;
  @Field(() => Int) cancelled!: number;
  @Field(() => Int) total!: number;
}

@ObjectType()
export class ResourceUsage {
  @Field(() => Float, { nullable: true, description: 'CPU time used (user + system)' }) cpuTimeMs!: number | null;
  @Field(() => Float, { nullable: true, description: 'for a live environment: current CPU use' }) cpuPercent!: number | null;
  @Field(() => Float, { nullable: true, description: 'current, for a live environment' }) memoryBytes!: number | null;
  @Field(() => Float, { nullable: true, description: 'peak over the run' }) peakMemoryBytes!: number | null;
}
