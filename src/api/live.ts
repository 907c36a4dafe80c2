import type { Logger } from 'pino';
import type { EventBus } from '../events/bus';
import { pushStream } from '../events/stream';
import type { EnvironmentView, OutputChunkView, PlanView, TestView } from '../views/view.types';
import type { Topic } from '../events/types';
import type { StatusService, SystemStatusView } from '../services/status.service';

/** The shortest gap between two systemStatusUpdated pushes: at most ~10 per second. */
export const STATUS_INTERVAL_MS = 100;

/**
 * systemStatus values handed to subscribers per turn of the event loop: each one is executed and sent by
 * graphql-ws in the same turn, so 10,000 at once held /healthz for seconds; between slices, I/O runs.
 */
export const STATUS_DELIVERY_SLICE = 100;

/**
 * Subscriptions of one API process: each is a filtered stream of the events every process publishes on
 * Redis. systemStatus is computed once per burst for all of this process's subscribers.
 */
export class LiveEvents {
  private readonly statusSubscribers = new Set<(s: SystemStatusView) => void>();
  private statusUnsubscribe: (() => void)[] = [];
  private statusTimer: NodeJS.Timeout | null = null;
  private statusRunning = false;
  private statusDirty = false;
  private lastStatusAt = 0;
  /** Changes heard so far; an initial state started before the latest change is not shared. */
  private changes = 0;
  private initial: { promise: Promise<SystemStatusView>; atChange: number } | null = null;
  /** Deliveries not made yet, in order (so a subscriber never sees an older state after a newer one). */
  private readonly deliveries: (() => void)[] = [];
  private delivering = false;

  constructor(
    private readonly bus: EventBus,
    private readonly status: StatusService,
    private readonly logger: Logger,
  ) {}

  /** Resolves once Redis confirmed the subscription, so no event published after that is missed. */
  private async stream<T>(topic: Topic, accept: (payload: T) => boolean, key?: string): Promise<AsyncIterableIterator<T>> {
    let off: (() => void) | null = null;
    const s = pushStream<T>(() => off?.());
    off = await this.bus.on(topic as 'test', ((payload: T) => {
      if (accept(payload)) s.push(payload);
    }) as never, key);
    return s;
  }

  tests(planId: string | null): Promise<AsyncIterableIterator<TestView>> {
    return this.stream<TestView>('test', (t) => planId === null || t.planId === planId);
  }

  plans(id: string | null): Promise<AsyncIterableIterator<PlanView>> {
    return this.stream<PlanView>('plan', (p) => id === null || p.id === id);
  }

  environments(pool: string | null): Promise<AsyncIterableIterator<EnvironmentView>> {
    return this.stream<EnvironmentView>('environment', (e) => pool === null || e.pool === pool);
  }

  output(testId: string): Promise<AsyncIterableIterator<OutputChunkView>> {
    return this.stream<OutputChunkView>('output', () => true, testId);
  }

  /** The current state at once, then after every change, coalesced; a burst always ends with its final state. */
  systemStatus(): AsyncIterableIterator<SystemStatusView> {
    const push = (s: SystemStatusView) => stream.push(s);
    const stream = pushStream<SystemStatusView>(() => {
      this.statusSubscribers.delete(push);
      if (this.statusSubscribers.size === 0) this.stopStatusFeed();
    }, 100);
    this.statusSubscribers.add(push);
    if (this.statusSubscribers.size === 1) this.startStatusFeed();
    this.currentStatus().then(
      (s) => this.deliver([() => push(s)]),
      (err: Error) => this.logger.error({ err }, 'systemStatus failed'),
    );
    return stream;
  }

  /**
   * The current state for new subscribers: one computation shared by all who subscribe while it runs
   * (10,000 subscribing at once made 10,000 queries and stalled the process for 18 s), unless a change
   * came after it started.
   */
  private currentStatus(): Promise<SystemStatusView> {
    if (this.initial && this.initial.atChange === this.changes) return this.initial.promise;
    const mine = { promise: this.status.systemStatus(), atChange: this.changes };
    this.initial = mine;
    const clear = () => {
      if (this.initial === mine) this.initial = null;
    };
    mine.promise.then(clear, clear);
    return mine.promise;
  }

  private deliver(fns: (() => void)[]): void {
    this.deliveries.push(...fns);
    if (this.delivering) return;
    this.delivering = true;
    const slice = () => {
      for (const fn of this.deliveries.splice(0, STATUS_DELIVERY_SLICE)) fn();
      if (this.deliveries.length) setImmediate(slice);
      else this.delivering = false;
    };
    slice();
  }

  private startStatusFeed(): void {
    const changed = () => this.statusChanged();
    for (const topic of ['test', 'plan', 'environment', 'system'] as const) {
      const p = this.bus.on(topic, changed);
      p.then((off) => this.statusUnsubscribe.push(off)).catch((err: Error) => this.logger.error({ err, topic }, 'could not subscribe'));
    }
  }

  private stopStatusFeed(): void {
    for (const off of this.statusUnsubscribe) off();
    this.statusUnsubscribe = [];
    if (this.statusTimer) clearTimeout(this.statusTimer);
    this.statusTimer = null;
    this.statusDirty = false;
  }

  private statusChanged(): void {
    this.changes++;
    this.statusDirty = true;
    if (this.statusTimer || this.statusRunning) return;
    const wait = Math.max(0, this.lastStatusAt + STATUS_INTERVAL_MS - Date.now());
    this.statusTimer = setTimeout(() => void this.pushStatus(), wait);
  }

  private async pushStatus(): Promise<void> {
    this.statusTimer = null;
    if (!this.statusDirty || this.statusSubscribers.size === 0) return;
    this.statusDirty = false;
    this.statusRunning = true;
    this.lastStatusAt = Date.now();
    try {
      const s = await this.status.systemStatus();
      this.deliver([...this.statusSubscribers].map((push) => () => push(s)));
    } catch (err) {
      this.logger.error({ err }, 'systemStatus failed');
    } finally {
      this.statusRunning = false;
      if (this.statusDirty) this.statusChanged();
    }
  }
}

