import { GraphQLError } from 'graphql';
import type { MiddlewareFn } from 'type-graphql';
import { UserError } from '../services/errors';

/** Turns a service's UserError into a GraphQL error whose extensions.code clients branch on (both transports). */
export const userErrors: MiddlewareFn = async (_, next) => {
  try {
    return await next();
  } catch (e) {
    if (e instanceof UserError) throw new GraphQLError(e.message, { extensions: { code: e.code, ...(e.details ?? {}) } });
    throw e;
  }
};
