// Errors never vanish: where giving up on a step is the right thing (cleanup, a probe, a second try
// that may fail), the step runs through bestEffort, which logs what was given up and why instead of a
// silent `catch {}`.

/** The part of a pino logger bestEffort needs (drivers pass their own DriverLogger). */
export interface WarnLogger {
  warn(obj: object, msg?: string): void;
}

/**
 * Runs `fn`; if it throws (or its promise rejects), logs `what` with the error at warn level and
 * returns `fallback`. `what` says what was given up, in words: "removing the run dir", "killing the group".
 */
export async function bestEffort<T>(log: WarnLogger, what: string, fn: () => T | Promise<T>, fallback?: T): Promise<T | undefined> {
  try {
    return await fn();
  } catch (err) {
    log.warn({ err: (err as Error)?.message ?? String(err) }, `${what} failed (ignored)`);
    return fallback;
  }
}

/** The synchronous form, for cleanup in `finally` blocks and exit handlers. */
export function bestEffortSync<T>(log: WarnLogger, what: string, fn: () => T, fallback?: T): T | undefined {
  try {
    return fn();
  } catch (err) {
    log.warn({ err: (err as Error)?.message ?? String(err) }, `${what} failed (ignored)`);
    return fallback;
  }
}
