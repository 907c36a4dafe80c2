import 'reflect-metadata';
import { printSchema, type GraphQLSchema } from 'graphql';
import { buildSchema } from 'type-graphql';
import { EnvironmentResolver } from './environment/environment.resolver';
import { ImageResolver } from './image/image.resolver';
import { userErrors } from './errors';
import { access } from './access';
import { TokenResolver } from './token/token.resolver';
import { PlanResolver } from './plan/plan.resolver';
import { DateTimeScalar } from './scalars';
import { SystemResolver } from './system/system.resolver';
import { TestCaseResolver } from './test/test.resolver';
import { TestResultResolver } from './test/test-result.resolver';

let built: GraphQLSchema | null = null;

/** The schema, generated from the type-graphql classes (once per process). */
export async function createSchema(): Promise<GraphQLSchema> {
  built ??= await buildSchema({
    resolvers: [PlanResolver, TestCaseResolver, TestResultResolver, EnvironmentResolver, ImageResolver, SystemResolver, TokenResolver],
    scalarsMap: [{ type: Date, scalar: DateTimeScalar }],
    globalMiddlewares: [userErrors, access], // access throws UserErrors too (RATE_LIMITED): userErrors wraps it
    validate: false, // input is validated by the domain, with messages that name the test and field
    // Every subscription has its own `subscribe` over the Redis event bus (src/api/live.ts); type-graphql
    // still insists on a pubSub, which is never used.
    pubSub: {
      publish: () => {
        throw new Error('unused: events are published on the Redis event bus');
      },
      subscribe: () => {
        throw new Error('unused: subscriptions read the Redis event bus');
      },
    },
  });
  return built;
}

/** The SDL committed as schema.graphql. */
export async function schemaSdl(): Promise<string> {
  return `${printSchema(await createSchema())}\n`;
}
