// The artifact store's total size, kept cheaply for systemStatus: a running total in Redis (every
// process that adds or removes a blob counts it, so the API sees what workers on other hosts stored),
// set to the truth by a periodic scan of the store (which also repairs what a crash between a write and
// its count left behind). Reading it is one Redis call, never a walk of the store.

import type { Redis } from 'ioredis';
import type { WarnLogger } from './best-effort';
import type { ArtifactStore, BlobReader, PutResult } from './artifact-store';

export interface StoreUsage {
  bytes: number;
  blobs: number;
  /** When a scan last set the totals; null: never scanned (the totals count changes since this key was made). */
  scannedAt: Date | null;
}

export class ArtifactUsage {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  private get key(): string {
    return `${this.prefix}:artifact-store:usage`;
  }

  async add(bytes: number, blobs: number): Promise<void> {
    await this.redis.multi().hincrby(this.key, 'bytes', bytes).hincrby(this.key, 'blobs', blobs).exec();
  }

  /**
   * The totals a scan found. Changes made while it ran may be counted twice or not at all: the next
   * scan sets them right.
   */
  async set(usage: { bytes: number; blobs: number }, at: Date): Promise<void> {
    await this.redis.hset(this.key, { bytes: usage.bytes, blobs: usage.blobs, scannedAt: at.toISOString() });
  }

  async get(): Promise<StoreUsage | null> {
    const h = await this.redis.hgetall(this.key);
    if (!h || Object.keys(h).length === 0) return null;
    return { bytes: Math.max(0, Number(h.bytes ?? 0)), blobs: Math.max(0, Number(h.blobs ?? 0)), scannedAt: h.scannedAt ? new Date(h.scannedAt) : null };
  }

  /** Walks the whole store (a batch at a time, yielding between them) and sets the totals. */
  async scan(store: ArtifactStore, now: () => Date, signal?: AbortSignal): Promise<{ bytes: number; blobs: number } | null> {
    let bytes = 0;
    let blobs = 0;
    for await (const batch of store.list()) {
      if (signal?.aborted) return null;
      for (const b of batch) bytes += b.size;
      blobs += batch.length;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    await this.set({ bytes, blobs }, now());
    return { bytes, blobs };
  }
}

/** The store, counting the blobs it adds and removes in the running total (a failed count is only logged). */
export class CountedArtifactStore implements ArtifactStore {
  constructor(
    private readonly inner: ArtifactStore,
    private readonly usage: ArtifactUsage,
    private readonly log: WarnLogger,
  ) {}

  get location(): string {
    return this.inner.location;
  }

  private count(bytes: number, blobs: number): void {
    void this.usage.add(bytes, blobs).catch((err: Error) => this.log.warn({ err: err.message }, 'artifact store: the running total was not updated (the next scan repairs it)'));
  }

  async putFile(path: string): Promise<PutResult> {
    const r = await this.inner.putFile(path);
    if (r.created) this.count(r.size, 1);
    return r;
  }

  async putBytes(data: Buffer | string): Promise<PutResult> {
    const r = await this.inner.putBytes(data);
    if (r.created) this.count(r.size, 1);
    return r;
  }

  has(key: string): Promise<boolean> {
    return this.inner.has(key);
  }

  open(key: string): Promise<BlobReader> {
    return this.inner.open(key);
  }

  async remove(key: string): Promise<number | null> {
    const size = await this.inner.remove(key);
    if (size !== null) this.count(-size, -1);
    return size;
  }

  list(): AsyncIterable<{ key: string; size: number }[]> {
    return this.inner.list();
  }

  check(): Promise<void> {
    return this.inner.check();
  }
}
