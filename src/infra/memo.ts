// A value made once, on first use, by an async function: every caller shares the one promise; a
// failure is handed to the callers waiting then and forgotten, so the next call tries again.

export class Memo<T> {
  private pending: Promise<T> | null = null;

  constructor(private readonly make: () => Promise<T>) {}

  get(): Promise<T> {
    if (!this.pending) {
      const made = this.make();
      this.pending = made;
      made.catch(() => {
        if (this.pending === made) this.pending = null;
      });
    }
    return this.pending;
  }

  /** Whether it was asked for (and has not failed): its promise, else null. */
  peek(): Promise<T> | null {
    return this.pending;
  }

  /** Forgets the value: the next get() makes it anew. */
  clear(): void {
    this.pending = null;
  }
}
