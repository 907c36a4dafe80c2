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
  @Field(() => Float, { nullable: true, description: 'of a finished run: CPU time in user mode' }) userCpuMs?: number | null;
  @Field(() => Float, { nullable: true, description: 'of a finished run: CPU time in the kernel' }) systemCpuMs?: number | null;
  @Field(() => Float, { nullable: true, description: 'of a finished run: times the script (and the processes it waited for) gave up the CPU to wait' })
  voluntaryContextSwitches?: number | null;
  @Field(() => Float, { nullable: true, description: 'of a finished run: times the script (and the processes it waited for) was preempted' })
  involuntaryContextSwitches?: number | null;
  @Field(() => Float, { nullable: true, description: 'bytes read from storage, where the kernel gives them (page-cache hits are not counted)' }) readBytes?: number | null;
  @Field(() => Float, { nullable: true, description: 'bytes written to storage, where the kernel gives them (counted when written to the page cache)' }) writeBytes?: number | null;
}
