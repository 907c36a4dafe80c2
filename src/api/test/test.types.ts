import { Field, Float, ID, Int, ObjectType } from 'type-graphql';
import { PageInfo, ResourceUsage } from '../common.types';
import { ArtifactKind, TestStatus, TestType } from '../enums';
import { DateTimeScalar, JSONScalar } from '../scalars';

@ObjectType()
export class Artifact {
  @Field(() => ID) id!: string;
  @Field() name!: string;
  @Field(() => ArtifactKind) kind!: ArtifactKind;
  @Field(() => Float) sizeBytes!: number;
  @Field() sha256!: string;
  @Field({ description: 'HTTP path on this server that returns the bytes' }) url!: string;
}

@ObjectType({ description: 'a figure a test reported itself' })
export class Metric {
  @Field() name!: string;
  @Field(() => Float) value!: number;
  @Field(() => String, { nullable: true }) unit!: string | null;
}

@ObjectType()
export class TestResult {
  @Field(() => Int, { nullable: true, description: 'null when the script was killed by a signal or never started' }) exitCode!: number | null;
  @Field(() => String, { nullable: true, description: 'e.g. "SIGKILL", "SIGSEGV" when the script was killed by a signal' }) signal!: string | null;
  @Field() stdout!: string;
  @Field() stderr!: string;
  @Field() outputTruncated!: boolean;
  @Field(() => Float) durationMs!: number;
  @Field() timedOut!: boolean;
  @Field(() => String, { nullable: true, description: 'why a test FAILED, TIMED_OUT or hit an ERROR, in one readable line' }) errorMessage!: string | null;
  @Field(() => ResourceUsage, { nullable: true }) metrics!: ResourceUsage | null;
  @Field(() => [Metric], { description: 'what the test itself reported: `##metric NAME VALUE [UNIT]` lines on stdout, or $METRICS_FILE' })
  reportedMetrics!: Metric[];
  @Field(() => Int, { description: 'how many artifacts the run kept; `artifacts` lists them a page at a time' }) artifactCount!: number;
  // artifacts(first, offset): TestResultResolver
}

/** Fields read from a TestView; plan, environment and result are resolved by TestCaseResolver. */
@ObjectType()
export class TestCase {
  @Field(() => ID) id!: string;
  @Field(() => ID) planId!: string;
  @Field() name!: string;
  @Field(() => TestType) type!: TestType;
  @Field(() => TestStatus) status!: TestStatus;
  @Field(() => Int, { description: 'runs started so far: 0 while first QUEUED, 1 once RUNNING, +1 per retry' }) attempts!: number;
  @Field(() => DateTimeScalar, { nullable: true }) queuedAt!: string | null;
  @Field(() => DateTimeScalar, { nullable: true }) startedAt!: string | null;
  @Field(() => DateTimeScalar, { nullable: true }) finishedAt!: string | null;
  @Field(() => JSONScalar, { description: 'the requirements it was submitted with' }) requirements!: unknown;
  @Field({ description: 'the pool it was matched to' }) pool!: string;
}

@ObjectType()
export class TestCaseConnection {
  @Field(() => [TestCase]) nodes!: TestCase[];
  @Field(() => PageInfo) pageInfo!: PageInfo;
  @Field(() => Int) totalCount!: number;
}

@ObjectType()
export class OutputChunk {
  @Field(() => ID) testId!: string;
  @Field({ description: '"stdout" | "stderr"' }) stream!: string;
  @Field() data!: string;
  @Field(() => Float, { description: 'byte offset of data in its stream: a client that reconnects resumes from here' }) offset!: number;
}
