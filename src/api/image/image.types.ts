import { Field, Float, ObjectType } from 'type-graphql';
import { ImageStatus } from '../enums';
import { DateTimeScalar } from '../scalars';

/** An environment image (an ImageView of the images service). */
@ObjectType({ description: 'an environment image: a root filesystem built once per worker host, shared by every test that names it' })
export class Image {
  @Field() name!: string;
  @Field({ description: '"debian:SUITE", "image:NAME", "oci:DIR[:TAG]", "oci-archive:FILE[:TAG]", "docker-archive:FILE" or "docker://REF"' }) source!: string;
  @Field(() => [String], { description: 'Debian packages installed on top of the source' }) packages!: string[];
  @Field(() => ImageStatus) status!: ImageStatus;
  @Field(() => String, { nullable: true, description: '"sha256:..." of the built version; changes with its definition or its source; null until built' }) digest!: string | null;
  @Field(() => Float, { nullable: true }) sizeBytes!: number | null;
  @Field(() => DateTimeScalar, { nullable: true }) builtAt!: string | null;
  @Field(() => String, { nullable: true, description: 'why the last build failed, in one readable line' }) error!: string | null;
  @Field(() => [String], { description: 'pools whose tests may use it' }) pools!: string[];
}
