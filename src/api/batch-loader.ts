/** Collects the keys asked for in one tick and loads them with one call (no N+1 queries per page). */
export class BatchLoader<K, V> {
  private pending: { key: K; resolve: (v: V | null) => void; reject: (e: unknown) => void }[] = [];

  constructor(private readonly loadMany: (keys: K[]) => Promise<Map<K, V>>) {}

  load(key: K): Promise<V | null> {
    return new Promise((resolve, reject) => {
      this.pending.push({ key, resolve, reject });
      if (this.pending.length === 1) process.nextTick(() => this.flush());
    });
  }

  private flush(): void {
    const batch = this.pending;
    this.pending = [];
    const keys = [...new Set(batch.map((b) => b.key))];
    this.loadMany(keys).then(
      (found) => batch.forEach((b) => b.resolve(found.get(b.key) ?? null)),
      (err) => batch.forEach((b) => b.reject(err)),
    );
  }
}
