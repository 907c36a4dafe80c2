/**
 * Calls `fn` when `signal` aborts, or at once when it already has: a listener attached after an await
 * never hears an abort that came during it. Returns the function that detaches it.
 */
export function onAbort(signal: AbortSignal | undefined, fn: () => void): () => void {
  if (!signal) return () => undefined;
  signal.addEventListener('abort', fn, { once: true });
  if (signal.aborted) fn();
  return () => signal.removeEventListener('abort', fn);
}
