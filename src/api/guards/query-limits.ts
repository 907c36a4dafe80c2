import {
  GraphQLError,
  NoSchemaIntrospectionCustomRule,
  getNamedType,
  isCompositeType,
  isListType,
  isNonNullType,
  parse,
  type DocumentNode,
  type GraphQLOutputType,
  type GraphQLSchema,
  type ValidationRule,
} from 'graphql';
import { maxAliasesRule } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthRule } from '@escape.tech/graphql-armor-max-depth';
import { getComplexity, type ComplexityEstimator } from 'graphql-query-complexity';
import type { QueryLimits } from '../../config/api-security';
import { DEFAULT_PAGE, MAX_PAGE } from '../../services/plan.service';

/**
 * Limits on one GraphQL document, checked before anything runs (issue 6, item 8), the same for HTTP
 * (Apollo: parseOptions, validationRules, a plugin for the cost) and for graphql-ws (onSubscribe).
 */

/** Size assumed for a list field that takes no `first` (environments, pools, artifacts, …). */
export const UNPAGED_LIST_SIZE = 10;

const code = 'GRAPHQL_VALIDATION_FAILED';
const limitError = (message: string) => new GraphQLError(message, { extensions: { code, http: { status: 400 } } });

export const tokenLimitMessage = (limit: number) =>
  `the query has more than ${limit} tokens, the limit (QUERY_TOKEN_LIMIT); nothing was run`;

/** graphql's own message when parse({ maxTokens }) stops (its spelling: "more that"). */
export const TOKEN_LIMIT_PATTERN = /^Syntax Error: Document contains more that (\d+) tokens/;

/** Parses with the token limit; an over-long document becomes the error above. */
export function parseLimited(source: string, limits: QueryLimits): DocumentNode {
  try {
    return parse(source, { maxTokens: limits.tokens });
  } catch (e) {
    if (e instanceof GraphQLError && TOKEN_LIMIT_PATTERN.test(e.message)) throw limitError(tokenLimitMessage(limits.tokens));
    throw e;
  }
}

/** Depth and aliases (GraphQL Armor's rules, with messages that name the variable) and introspection. */
export function limitRules(limits: QueryLimits, introspection: boolean): ValidationRule[] {
  const found = (err: GraphQLError) => Number(/found (\d+)/.exec(err.message)?.[1] ?? NaN);
  const rules: ValidationRule[] = [
    maxDepthRule({
      n: limits.depth,
      propagateOnRejection: false,
      onReject: [
        (ctx, err) =>
          ctx?.reportError(limitError(`query depth ${found(err)} exceeds the limit of ${limits.depth} (QUERY_DEPTH_LIMIT); nothing was run`)),
      ],
    }),
    maxAliasesRule({
      n: limits.aliases,
      propagateOnRejection: false,
      onReject: [
        (ctx, err) =>
          ctx?.reportError(limitError(`the query has ${found(err)} aliases, more than the limit of ${limits.aliases} (QUERY_ALIAS_LIMIT); nothing was run`)),
      ],
    }),
  ];
  if (!introspection) rules.push(NoSchemaIntrospectionCustomRule);
  return rules;
}

const isList = (t: GraphQLOutputType): boolean => isListType(isNonNullType(t) ? t.ofType : t);

/**
 * 1 per field; a connection (a field taking `first`) costs its page size times its selection (first
 * clamped to the schema's page size, 50 when not given: that is what the resolver returns); a plain
 * list taking `first` (a result's artifacts) costs `first` when given, else like any other list; any other
 * list of objects costs UNPAGED_LIST_SIZE times its selection. Introspection is free (GraphiQL's query
 * is a fixed shape, and the depth and token limits bound it).
 */
const estimator: ComplexityEstimator = ({ type, field, node, args, childComplexity }) => {
  if (type.name.startsWith('__') || field.name === '__schema' || field.name === '__type') return 0;
  if (field.args.some((a) => a.name === 'first')) {
    // A plain list that can be paged (a result's artifacts: a few, usually) is sized like any other
    // list unless the query asks for a page; a connection's page is what `first` says, or its default.
    const asked = node.arguments?.some((a) => a.name.value === 'first') ?? false;
    const connection = getNamedType(field.type).name.endsWith('Connection');
    const unasked = connection ? DEFAULT_PAGE : UNPAGED_LIST_SIZE;
    const first = asked && typeof args.first === 'number' ? Math.min(Math.max(args.first, 0), MAX_PAGE) : unasked;
    return 1 + first * childComplexity;
  }
  // a connection's nodes are its page, counted above
  if (isList(field.type) && isCompositeType(getNamedType(field.type)) && !type.name.endsWith('Connection')) {
    return 1 + UNPAGED_LIST_SIZE * childComplexity;
  }
  return 1 + childComplexity;
};

/**
 * The cost error, or null when the operation is within QUERY_COST_LIMIT. Variables that do not fit
 * their types leave the cost to execution, which refuses them before running anything.
 */
export function costError(
  schema: GraphQLSchema,
  document: DocumentNode,
  variables: Record<string, unknown> | undefined,
  operationName: string | undefined | null,
  limits: QueryLimits,
): GraphQLError | null {
  let cost: number;
  try {
    cost = getComplexity({ schema, query: document, variables: variables ?? {}, operationName: operationName ?? undefined, estimators: [estimator] });
  } catch (e) {
    if (e instanceof GraphQLError && /maximum allowed number of nodes/.test(e.message)) {
      return limitError(`the query has too many fields to estimate its cost (more than 10000), over QUERY_COST_LIMIT; nothing was run`);
    }
    return null; // a variable error: execution reports it, before any resolver runs
  }
  if (cost <= limits.cost) return null;
  return limitError(
    `query cost ${cost} exceeds the limit of ${limits.cost} (QUERY_COST_LIMIT): every field costs 1, times the page size (first, ${DEFAULT_PAGE} when not given) below a list; ask for smaller pages or fewer nested lists; nothing was run`,
  );
}
