// The periodic upkeep of an API process, beside the reconciler: plans past RETENTION_DAYS are deleted
// (retention.service.ts) and the artifact store's size is counted afresh (at most hourly, or after a
// pass removed blobs). One pass at a time across every API process (a lease in Redis); each pass works
// in batches and yields, so the API keeps answering.

import type { Lease } from '../infra/redis-lock';
import type { ServiceDeps } from './context';
import type { RetentionService } from './retention.service';

/** How long a scan of the store's size stays current. */
export const SCAN_EVERY_MS = 60 * 60 * 1000;
/** The lease's expiry (renewed while a pass runs): a process that dies frees it after this long. */
const LEASE_MS = 60_000;
/** The first pass, a little after start-up (the API answers first). */
const FIRST_PASS_MS = 5_000;

export type MaintenanceDeps = Pick<ServiceDeps, 'config' | 'logger' | 'store' | 'storeUsage' | 'now'> & {
  retention: RetentionService;
  /** One holder at a time across processes (infra/redis-lock.ts); null: another process holds it. */
  tryLease(name: string, ttlMs: number): Promise<Lease | null>;
};

export interface PassReport {
  /** false: another process was doing it. */
  ran: boolean;
  plans: number;
  scanned: { bytes: number; blobs: number } | null;
}

export class MaintenanceJob {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<PassReport> | null = null;
  private readonly stopping = new AbortController();

  constructor(private readonly d: MaintenanceDeps) {}

  start(): void {
    const first = setTimeout(() => void this.tick(), FIRST_PASS_MS);
    first.unref();
    this.timer = setInterval(() => void this.tick(), this.d.config.retentionIntervalMs);
    this.timer.unref();
    this.stopping.signal.addEventListener('abort', () => clearTimeout(first), { once: true });
  }

  private async tick(): Promise<void> {
    if (this.running || this.stopping.signal.aborted) return;
    await this.pass().catch((err: Error) => this.d.logger.error({ err }, 'maintenance pass failed (retention, artifact store size)'));
  }

  /** One pass now (or the one running): retention, then a scan of the store when due. */
  pass(opts: { scan?: boolean } = {}): Promise<PassReport> {
    this.running ??= this.run(opts).finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async run(opts: { scan?: boolean }): Promise<PassReport> {
    const signal = this.stopping.signal;
    const lease = await this.d.tryLease('maintenance', LEASE_MS);
    if (!lease) return { ran: false, plans: 0, scanned: null };
    try {
      const expired = await this.d.retention.expire(signal);
      const usage = await this.d.storeUsage.get();
      const due =
        opts.scan || expired.blobsRemoved > 0 || !usage?.scannedAt || this.d.now().getTime() - usage.scannedAt.getTime() >= SCAN_EVERY_MS;
      const scanned = due && !signal.aborted && lease.held ? await this.d.storeUsage.scan(this.d.store, this.d.now, signal) : null;
      if (scanned) this.d.logger.info({ ...scanned, store: this.d.store.location }, 'artifact store size counted');
      return { ran: true, plans: expired.plans, scanned };
    } finally {
      await lease.release().catch((err: Error) => this.d.logger.warn({ err: err.message }, 'releasing the maintenance lease failed (it expires by itself)'));
    }
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    // a failed pass was logged by tick() (or reported to whoever called pass())
    await this.running?.catch(() => undefined);
  }
}
