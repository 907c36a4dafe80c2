// Turns push callbacks into the AsyncIterable a GraphQL subscription returns, with a bounded buffer:
// a client that stops reading loses its oldest events rather than the server's memory.

export interface PushStream<T> extends AsyncIterableIterator<T> {
  push(value: T): void;
  end(): void;
}

export function pushStream<T>(onClose: () => void, maxBuffered = 10_000): PushStream<T> {
  const buffer: T[] = [];
  let waiting: ((r: IteratorResult<T>) => void) | null = null;
  let done = false;
  const finish = (): IteratorResult<T> => {
    if (!done) {
      done = true;
      onClose();
    }
    const w = waiting;
    waiting = null;
    w?.({ value: undefined, done: true });
    return { value: undefined, done: true };
  };
  const stream: PushStream<T> = {
    push(value: T) {
      if (done) return;
      if (waiting) {
        const w = waiting;
        waiting = null;
        w({ value, done: false });
        return;
      }
      buffer.push(value);
      if (buffer.length > maxBuffered) buffer.shift();
    },
    end() {
      finish();
    },
    next() {
      if (buffer.length) return Promise.resolve({ value: buffer.shift() as T, done: false });
      if (done) return Promise.resolve({ value: undefined, done: true });
      return new Promise((resolve) => {
        waiting = resolve;
      });
    },
    return() {
      return Promise.resolve(finish());
    },
    throw(err?: unknown) {
      finish();
      return Promise.reject(err);
    },
    [Symbol.asyncIterator]() {
      return stream;
    },
  };
  return stream;
}
