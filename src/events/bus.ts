import { Redis } from 'ioredis';
import type { EventMap, Topic } from './types';

type Listener<T extends Topic> = (payload: EventMap[T]) => void;

export interface EventPublisher {
  publish<T extends Topic>(topic: T, payload: EventMap[T]): Promise<void>;
}

/**
 * Typed pub/sub over Redis: any process publishes, every subscribed process hears it. Each process holds
 * one subscriber connection and fans messages out to its local listeners; `output` travels on one
 * channel per test, subscribed only while someone listens to that test.
 */
export class EventBus implements EventPublisher {
  private readonly listeners = new Map<string, Set<(payload: unknown) => void>>();
  private subscriber: Redis | null = null;
  private closed = false;

  constructor(
    private readonly publisher: Redis,
    private readonly prefix: string,
    private readonly onError: (err: Error, context: object) => void = () => undefined,
  ) {}

  private channel(topic: Topic, key?: string): string {
    return key === undefined ? `${this.prefix}:events:${topic}` : `${this.prefix}:events:${topic}:${key}`;
  }

  async publish<T extends Topic>(topic: T, payload: EventMap[T]): Promise<void> {
    const key = topic === 'output' ? (payload as EventMap['output']).testId : undefined;
    await this.publisher.publish(this.channel(topic, key), JSON.stringify(payload));
  }

  /** Publishes without waiting; a failure is logged, never thrown into the caller's work. */
  emit<T extends Topic>(topic: T, payload: EventMap[T]): void {
    this.publish(topic, payload).catch((err: Error) => this.onError(err, { topic }));
  }

  private async ensureSubscriber(): Promise<Redis> {
    if (!this.subscriber) {
      const sub = this.publisher.duplicate();
      sub.on('message', (channel: string, message: string) => this.dispatch(channel, message));
      sub.on('error', (err) => this.onError(err, { what: 'event subscriber connection' }));
      this.subscriber = sub;
    }
    return this.subscriber;
  }

  private dispatch(channel: string, message: string): void {
    const set = this.listeners.get(channel);
    if (!set?.size) return;
    let payload: unknown;
    try {
      payload = JSON.parse(message);
    } catch (err) {
      this.onError(err as Error, { channel, what: 'malformed event' });
      return;
    }
    for (const listener of set) {
      try {
        listener(payload);
      } catch (err) {
        this.onError(err as Error, { channel, what: 'event listener' });
      }
    }
  }

  /** Listens to a topic (for `output`, to one test's channel); resolves once Redis confirmed. Returns the unsubscribe. */
  async on<T extends Topic>(topic: T, listener: Listener<T>, key?: string): Promise<() => void> {
    if (this.closed) throw new Error('event bus is closed');
    const channel = this.channel(topic, key);
    let set = this.listeners.get(channel);
    const first = !set;
    if (!set) {
      set = new Set();
      this.listeners.set(channel, set);
    }
    const fn = listener as (payload: unknown) => void;
    set.add(fn);
    if (first) await (await this.ensureSubscriber()).subscribe(channel);
    return () => {
      const current = this.listeners.get(channel);
      if (!current) return;
      current.delete(fn);
      if (current.size === 0) {
        this.listeners.delete(channel);
        this.subscriber?.unsubscribe(channel).catch((err: Error) => this.onError(err, { channel, what: 'unsubscribing (messages still arriving are dropped: no listener)' }));
      }
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.listeners.clear();
    const sub = this.subscriber;
    this.subscriber = null;
    if (sub)
      await sub.quit().catch((err: Error) => {
        this.onError(err, { what: 'closing the event subscriber gracefully; disconnecting it' });
        sub.disconnect();
      });
  }
}
