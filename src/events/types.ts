// Events cross Redis as JSON: every payload is a plain object, dates as ISO strings. The views they
// carry are defined beside their mappers, in src/views/.

import type { EnvironmentView, OutputChunkView, PlanView, TestView } from '../views/view.types';

export interface EventMap {
  test: TestView;
  plan: PlanView;
  environment: EnvironmentView;
  /** Something changed that systemStatus shows but no other event carries (a worker came or went). */
  system: { reason: string };
  /** A request to abort a running test, heard by every worker. */
  cancel: { testId: string };
  output: OutputChunkView;
  /** A token was revoked: every API process forgets it and closes its WebSocket connections. */
  token: { revokedId: string };
}

export type Topic = keyof EventMap;
