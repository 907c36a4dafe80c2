export type ErrorCode = 'BAD_USER_INPUT' | 'UNSCHEDULABLE' | 'NOT_FOUND' | 'UNAUTHENTICATED' | 'FORBIDDEN' | 'RATE_LIMITED';

/** A rejection the client caused; the API turns it into a GraphQL error with extensions.code. */
export class UserError extends Error {
  override readonly name = 'UserError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}
