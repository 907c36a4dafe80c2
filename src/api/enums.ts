import { registerEnumType } from 'type-graphql';
import * as E from '../domain/enums';

// The GraphQL contract's enums, made from the domain's lists (src/domain/enums.ts): one source for the
// values. Each is an object { VALUE: 'VALUE' } (what registerEnumType takes) and a type of the same name.
type EnumObject<T extends readonly string[]> = { readonly [K in T[number]]: K };
const enumOf = <T extends readonly string[]>(values: T): EnumObject<T> => Object.fromEntries(values.map((v) => [v, v])) as EnumObject<T>;

export const TestType = enumOf(E.TEST_TYPES);
export type TestType = E.TestType;
export const EnvironmentKind = enumOf(E.ENVIRONMENT_KINDS);
export type EnvironmentKind = E.EnvironmentKind;
export const TestStatus = enumOf(E.TEST_STATUSES);
export type TestStatus = E.TestStatus;
export const PlanStatus = enumOf(E.PLAN_STATUSES);
export type PlanStatus = E.PlanStatus;
export const EnvironmentStatus = enumOf(E.ENVIRONMENT_STATUSES);
export type EnvironmentStatus = E.EnvironmentStatus;
export const ArtifactKind = enumOf(E.ARTIFACT_KINDS);
export type ArtifactKind = E.ArtifactKind;
export const ImageStatus = enumOf(E.IMAGE_STATUSES);
export type ImageStatus = E.ImageStatus;
export const Role = enumOf(E.ROLES);
export type Role = E.Role;

registerEnumType(TestType, { name: 'TestType' });
registerEnumType(EnvironmentKind, { name: 'EnvironmentKind' });
registerEnumType(TestStatus, { name: 'TestStatus', description: 'QUEUED -> RUNNING -> PASSED | FAILED | TIMED_OUT | ERROR ; CANCELLED from QUEUED or RUNNING' });
registerEnumType(PlanStatus, { name: 'PlanStatus', description: 'Derived from the tests of the plan' });
registerEnumType(EnvironmentStatus, { name: 'EnvironmentStatus' });
registerEnumType(ArtifactKind, { name: 'ArtifactKind' });
registerEnumType(Role, { name: 'Role', description: 'VIEWER: queries, subscriptions, downloads; SUBMITTER: + submit, upload bundles, cancel or delete its own plans; ADMIN: everything' });
registerEnumType(ImageStatus, { name: 'ImageStatus', description: 'MISSING (not built yet), BUILDING, READY, FAILED (Image.error says why)' });
