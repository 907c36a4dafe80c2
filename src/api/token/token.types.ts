import { Field, ID, InputType, ObjectType } from 'type-graphql';
import { Role } from '../enums';
import { DateTimeScalar } from '../scalars';

@ObjectType({ description: 'a caller of the API (AUTH=on); its secret is never shown again after createToken' })
export class ApiToken {
  @Field(() => ID) id!: string;
  @Field() name!: string;
  @Field(() => Role) role!: Role;
  @Field(() => DateTimeScalar) createdAt!: string;
  @Field(() => DateTimeScalar, { nullable: true, description: 'kept to within TOKEN_RECHECK_MS' }) lastUsedAt!: string | null;
  @Field(() => DateTimeScalar, { nullable: true }) revokedAt!: string | null;
}

@ObjectType()
export class CreatedToken {
  @Field({ description: 'the secret, returned only here, stored only as a hash' }) token!: string;
  @Field(() => ApiToken) apiToken!: ApiToken;
}

@InputType()
export class CreateTokenInput {
  @Field() name!: string;
  @Field(() => Role) role!: Role;
}
