import { Field, InputType, Int } from 'type-graphql';
import { EnvironmentKind, TestType } from '../enums';

@InputType()
export class RequirementsInput {
  @Field(() => EnvironmentKind, { nullable: true, description: 'default: QEMU when arch/cpus/memory can only be met by a VM pool, else CONTAINER' })
  kind?: EnvironmentKind | null;
  @Field(() => String, { nullable: true, description: '"x86_64", "aarch64", ...' }) arch?: string | null;
  @Field(() => Int, { nullable: true, description: 'at least this many CPUs' }) cpus?: number | null;
  @Field(() => Int, { nullable: true, description: 'at least this much memory' }) memoryMb?: number | null;
  @Field(() => String, { nullable: true, description: 'a named environment image' }) image?: string | null;
  @Field(() => [String], { nullable: true, description: 'every tag must be offered by the pool' }) tags?: string[] | null;
}

@InputType({ description: "a dependency started inside the test's environment before the script (integration tests)" })
export class ServiceInput {
  @Field() name!: string;
  @Field() command!: string;
  @Field(() => String, { nullable: true, description: 'shell command that exits 0 once the service is ready' }) readyCheck?: string | null;
}

@InputType()
export class EnvVarInput {
  @Field() name!: string;
  @Field() value!: string;
}

@InputType({ description: "a file placed in the test's working directory before the script runs" })
export class FileInput {
  @Field({ description: 'relative; no "..", not absolute; directories are created' }) path!: string;
  @Field() content!: string;
  @Field(() => String, { nullable: true, description: '"utf8" (default) or "base64"' }) encoding?: string | null;
  @Field(() => Boolean, { nullable: true, description: 'default false' }) executable?: boolean | null;
}

@InputType()
export class TestCaseInput {
  @Field() name!: string;
  @Field(() => TestType) type!: TestType;
  @Field({ description: 'run by /bin/sh inside the environment; a #! line picks another interpreter; not empty' }) script!: string;
  @Field(() => Int, { nullable: true, description: '1 to 86400; default from configuration' }) timeoutSeconds?: number | null;
  @Field(() => RequirementsInput, { nullable: true }) requirements?: RequirementsInput | null;
  @Field(() => [ServiceInput], { nullable: true }) services?: ServiceInput[] | null;
  @Field(() => [EnvVarInput], { nullable: true }) env?: EnvVarInput[] | null;
  @Field(() => [String], { nullable: true, description: "paths or globs, relative to the test's working directory, collected after the run" })
  artifactPaths?: string[] | null;
  @Field(() => Int, { nullable: true, description: 'retries after an environment failure (never after a plain test failure)' }) maxRetries?: number | null;
  @Field(() => [FileInput], { nullable: true, description: "this test's own files (a path here wins over the plan's files and bundle)" })
  files?: FileInput[] | null;
}

@InputType()
export class SubmitPlanInput {
  @Field() name!: string;
  @Field(() => Int, { nullable: true, description: 'higher runs first; equal priorities run in submission order; default 0' }) priority?: number | null;
  @Field(() => [TestCaseInput]) tests!: TestCaseInput[];
  @Field(() => String, { nullable: true, description: 'submitting the same key again returns the plan created the first time' })
  idempotencyKey?: string | null;
  @Field(() => String, { nullable: true, description: "id of an uploaded bundle (POST /bundles): its files are in every test's working directory" })
  bundle?: string | null;
  @Field(() => [FileInput], { nullable: true, description: "files for every test of the plan (win over the bundle's)" }) files?: FileInput[] | null;
}
