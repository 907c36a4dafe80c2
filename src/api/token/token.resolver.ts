import { Arg, Ctx, ID, Mutation, Query, Resolver } from 'type-graphql';
import type { TokenView } from '../../services/auth/token.service';
import type { ApiContext } from '../context';
import { ApiToken, CreatedToken, CreateTokenInput } from './token.types';

/** Who may call these is decided by the access middleware (domain/access.ts): tokens, createToken, revokeToken are ADMIN's. */
@Resolver()
export class TokenResolver {
  @Query(() => [ApiToken], { description: 'ADMIN only' })
  tokens(@Ctx() ctx: ApiContext): Promise<TokenView[]> {
    return ctx.services.tokens.list();
  }

  @Query(() => ApiToken, { nullable: true, description: 'the token of this request; null when authentication is off' })
  viewer(@Ctx() ctx: ApiContext): Promise<TokenView | null> {
    return ctx.services.tokens.viewer(ctx.caller);
  }

  @Mutation(() => CreatedToken, { description: 'ADMIN only' })
  createToken(@Arg('input', () => CreateTokenInput) input: CreateTokenInput, @Ctx() ctx: ApiContext): Promise<{ token: string; apiToken: TokenView }> {
    return ctx.services.tokens.create(input.name, input.role);
  }

  @Mutation(() => ApiToken, { description: 'ADMIN only; the token stops working at once, also on open WebSocket connections' })
  revokeToken(@Arg('id', () => ID) id: string, @Ctx() ctx: ApiContext): Promise<TokenView> {
    return ctx.services.tokens.revoke(id);
  }
}
