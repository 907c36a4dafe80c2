import { GraphQLError, specifiedRules, validate, type DocumentNode, type ExecutionArgs, type GraphQLSchema } from 'graphql';
import type { QueryLimits } from '../../config/api-security';
import { costError, limitRules, parseLimited } from './query-limits';

/** Parsed and validated documents kept, by query text: a dashboard sends the same few again and again. */
const CACHE_SIZE = 500;

/**
 * The checks of one graphql-ws operation, the same as Apollo's over HTTP (tokens, the specified rules,
 * depth, aliases, introspection, cost), run before anything executes. Like Apollo, it keeps the
 * validation of a query text it has seen (2,000 subscribers of one query validated it 2,000 times).
 */
export class WsOperationCheck {
  private readonly rules;
  private readonly cache = new Map<string, { document: DocumentNode } | { errors: readonly GraphQLError[] }>();

  constructor(
    private readonly schema: GraphQLSchema,
    private readonly limits: QueryLimits,
    introspection: boolean,
  ) {
    this.rules = [...specifiedRules, ...limitRules(limits, introspection)];
  }

  /** What to execute, or the errors to send instead. */
  check(payload: { query: string; variables?: Record<string, unknown> | null; operationName?: string | null }): ExecutionArgs | readonly GraphQLError[] {
    let entry = this.cache.get(payload.query);
    if (entry) {
      this.cache.delete(payload.query); // most recently used last
    } else {
      entry = this.parseAndValidate(payload.query);
    }
    this.cache.set(payload.query, entry);
    if (this.cache.size > CACHE_SIZE) this.cache.delete(this.cache.keys().next().value as string);
    if ('errors' in entry) return entry.errors;
    const cost = costError(this.schema, entry.document, payload.variables ?? undefined, payload.operationName, this.limits);
    if (cost) return [cost];
    return { schema: this.schema, document: entry.document, operationName: payload.operationName, variableValues: payload.variables };
  }

  private parseAndValidate(query: string): { document: DocumentNode } | { errors: readonly GraphQLError[] } {
    let document: DocumentNode;
    try {
      document = parseLimited(query, this.limits);
    } catch (e) {
      return { errors: [e instanceof GraphQLError ? e : new GraphQLError((e as Error).message)] };
    }
    const errors = validate(this.schema, document, this.rules);
    return errors.length ? { errors } : { document };
  }
}
