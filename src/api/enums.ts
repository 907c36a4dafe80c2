import { registerEnumType } from 'type-graphql';

// Enums of the GraphQL contract (values equal to the database's enums).
export enum TestType { UNIT = 'UNIT', INTEGRATION = 'INTEGRATION', PERFORMANCE = 'PERFORMANCE', SECURITY = 'SECURITY' }
export enum EnvironmentKind { CONTAINER = 'CONTAINER', QEMU = 'QEMU' }
export enum TestStatus { QUEUED = 'QUEUED', RUNNING = 'RUNNING', PASSED = 'PASSED', FAILED = 'FAILED', TIMED_OUT = 'TIMED_OUT', ERROR = 'ERROR', CANCELLED = 'CANCELLED' }
export enum PlanStatus { QUEUED = 'QUEUED', RUNNING = 'RUNNING', PASSED = 'PASSED', FAILED = 'FAILED', CANCELLED = 'CANCELLED' }
export enum EnvironmentStatus { PROVISIONING = 'PROVISIONING', READY = 'READY', BUSY = 'BUSY', RESETTING = 'RESETTING', UNHEALTHY = 'UNHEALTHY', RETIRED = 'RETIRED' }
export enum ArtifactKind { LOG = 'LOG', CORE_DUMP = 'CORE_DUMP', FILE = 'FILE' }

registerEnumType(TestType, { name: 'TestType' });
registerEnumType(EnvironmentKind, { name: 'EnvironmentKind' });
registerEnumType(TestStatus, { name: 'TestStatus', description: 'QUEUED -> RUNNING -> PASSED | FAILED | TIMED_OUT | ERROR ; CANCELLED from QUEUED or RUNNING' });
registerEnumType(PlanStatus, { name: 'PlanStatus', description: 'Derived from the tests of the plan' });
registerEnumType(EnvironmentStatus, { name: 'EnvironmentStatus' });
registerEnumType(ArtifactKind, { name: 'ArtifactKind' });
