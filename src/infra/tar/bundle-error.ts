/**
 * A bundle refused for what its sender did: the HTTP status to answer (400 a bad or hostile archive, 413
 * over a limit, 415 a compression this server cannot read) and one line naming the entry.
 */
export class BundleError extends Error {
  override readonly name = 'BundleError';
  constructor(
    readonly status: 400 | 413 | 415,
    message: string,
  ) {
    super(message);
  }
}
