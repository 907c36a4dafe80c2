// The value lists of the model, defined once. The zod schemas (config, plan input), the GraphQL enums
// (api/enums.ts), the view and row types derive from these; test/unit/enums.test.ts checks that the
// database's enums (prisma/schema.prisma) and the GraphQL schema's hold the same values. Pure.

/** Where a test runs: a bubblewrap sandbox or a virtual machine. */
export const ENVIRONMENT_KINDS = ['CONTAINER', 'QEMU'] as const;
export type EnvironmentKind = (typeof ENVIRONMENT_KINDS)[number];

export const TEST_TYPES = ['UNIT', 'INTEGRATION', 'PERFORMANCE', 'SECURITY'] as const;
export type TestType = (typeof TEST_TYPES)[number];

/** The test state machine's states (transitions in domain/status.ts). */
export const TEST_STATUSES = ['QUEUED', 'RUNNING', 'PASSED', 'FAILED', 'TIMED_OUT', 'ERROR', 'CANCELLED'] as const;
export type TestStatus = (typeof TEST_STATUSES)[number];

/** A plan's status, derived from its tests (planStatusFrom in domain/status.ts). */
export const PLAN_STATUSES = ['QUEUED', 'RUNNING', 'PASSED', 'FAILED', 'CANCELLED'] as const;
export type PlanStatus = (typeof PLAN_STATUSES)[number];

export const ENVIRONMENT_STATUSES = ['PROVISIONING', 'READY', 'BUSY', 'RESETTING', 'UNHEALTHY', 'RETIRED'] as const;
export type EnvironmentStatus = (typeof ENVIRONMENT_STATUSES)[number];

export const ARTIFACT_KINDS = ['LOG', 'CORE_DUMP', 'FILE'] as const;
export type ArtifactKind = (typeof ARTIFACT_KINDS)[number];

/** An environment image on the hosts of the workers: not built yet, building, usable, or its build failed. */
export const IMAGE_STATUSES = ['MISSING', 'BUILDING', 'READY', 'FAILED'] as const;
export type ImageStatus = (typeof IMAGE_STATUSES)[number];

/** What an API token may do (domain/access.ts): each role can do all the one before it can. */
export const ROLES = ['VIEWER', 'SUBMITTER', 'ADMIN'] as const;
export type Role = (typeof ROLES)[number];

/** The lists by the name of their type, as the database and the GraphQL schema name them. */
export const ENUMS = {
  EnvironmentKind: ENVIRONMENT_KINDS,
  TestType: TEST_TYPES,
  TestStatus: TEST_STATUSES,
  PlanStatus: PLAN_STATUSES,
  EnvironmentStatus: ENVIRONMENT_STATUSES,
  ArtifactKind: ARTIFACT_KINDS,
  ImageStatus: IMAGE_STATUSES,
  Role: ROLES,
} as const;
