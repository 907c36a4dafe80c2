// Each value list is defined once (src/domain/enums.ts): the database's enums (prisma/schema.prisma, as
// the generated client holds them) and the GraphQL schema's enums must hold exactly those values, in order.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GraphQLEnumType } from 'graphql';
import { createSchema } from '../../src/api/schema';
import * as Api from '../../src/api/enums';
import { ENUMS } from '../../src/domain/enums';
import type * as D from '../../src/domain/enums';
import * as Prisma from '../../src/generated/prisma/enums';

// The types agree too: a compile error here when a list and the Prisma schema drift apart.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const typesAgree: [
  Same<D.TestType, Prisma.TestType>,
  Same<D.EnvironmentKind, Prisma.EnvironmentKind>,
  Same<D.TestStatus, Prisma.TestStatus>,
  Same<D.PlanStatus, Prisma.PlanStatus>,
  Same<D.EnvironmentStatus, Prisma.EnvironmentStatus>,
  Same<D.ArtifactKind, Prisma.ArtifactKind>,
  Same<D.ImageStatus, Prisma.ImageStatus>,
] = [true, true, true, true, true, true, true];

describe('enums: one source', () => {
  it('lists every enum of the database schema, each with the same values', () => {
    assert.ok(typesAgree.every(Boolean));
    const prismaEnums = Object.fromEntries(
      Object.entries(Prisma).filter(([, v]) => typeof v === 'object' && v !== null).map(([k, v]) => [k, Object.values(v as object)]),
    );
    assert.deepEqual(Object.keys(prismaEnums).sort(), Object.keys(ENUMS).sort(), 'an enum of prisma/schema.prisma has no list in src/domain/enums.ts, or the other way round');
    for (const [name, values] of Object.entries(ENUMS)) assert.deepEqual(prismaEnums[name], [...values], `${name}: database vs domain`);
  });

  it('gives the GraphQL schema exactly the domain values', async () => {
    const schema = await createSchema();
    for (const [name, values] of Object.entries(ENUMS)) {
      const type = schema.getType(name);
      assert.ok(type instanceof GraphQLEnumType, `${name} is a GraphQL enum`);
      assert.deepEqual(type.getValues().map((v) => v.value), [...values], `${name}: GraphQL vs domain`);
      assert.deepEqual(Object.values(Api[name as keyof typeof ENUMS]), [...values], `${name}: api/enums.ts`);
    }
  });
});
