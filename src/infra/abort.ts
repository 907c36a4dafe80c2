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

/** `p`, or a rejection as soon as `signal` aborts (`p` goes on by itself). */
export function untilAborted<T>(p: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return p;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const detach = onAbort(signal, () => reject(signal.reason ?? new Error('aborted')));
    p.then(resolve, reject).finally(detach);
  });
}
