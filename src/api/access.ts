import { GraphQLError } from 'graphql';
import type { MiddlewareFn } from 'type-graphql';
import { refusal, roleForField } from '../domain/access';
import type { ApiContext } from './context';

/**
 * Before each root field runs: the caller's role must allow it (FORBIDDEN otherwise), and each
 * mutation field counts against the caller's rate limit (RATE_LIMITED). The transport has already
 * refused a request without a valid token (401, or close 4401). Nothing below a root field is checked:
 * what a role may read, it may read whole.
 */
export const access: MiddlewareFn<ApiContext> = async ({ context, info }, next) => {
  if (info.path.prev !== undefined) return next();
  const operation = info.operation.operation;
  const why = refusal(context.caller, roleForField(operation, info.fieldName), `${operation === 'query' ? '' : `${operation} `}${info.fieldName}`);
  if (why) throw new GraphQLError(why, { extensions: { code: 'FORBIDDEN' } });
  if (operation === 'mutation') await context.services.fairUse.mutation(context.caller);
  return next();
};
