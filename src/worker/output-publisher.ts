import type { EventBus } from '../events/bus';

const FLUSH_MS = 50;
const FLUSH_BYTES = 16 * 1024;

/** Live output of one run, published in chunks (at most every 50 ms or 16 KiB) with byte offsets. */
export class OutputPublisher {
  private readonly pending = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
  private readonly pendingBytes = { stdout: 0, stderr: 0 };
  private readonly offsets = { stdout: 0, stderr: 0 };
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly events: EventBus,
    private readonly testId: string,
  ) {}

  push(stream: 'stdout' | 'stderr', chunk: Buffer): void {
    this.pending[stream].push(chunk);
    this.pendingBytes[stream] += chunk.length;
    if (this.pendingBytes[stream] >= FLUSH_BYTES) this.flush(stream);
    else this.timer ??= setTimeout(() => this.flushAll(), FLUSH_MS);
  }

  private flush(stream: 'stdout' | 'stderr'): void {
    if (!this.pending[stream].length) return;
    const data = Buffer.concat(this.pending[stream]);
    this.pending[stream] = [];
    this.pendingBytes[stream] = 0;
    this.events.emit('output', { testId: this.testId, stream, data: data.toString('utf8'), offset: this.offsets[stream] });
    this.offsets[stream] += data.length;
  }

  flushAll(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.flush('stdout');
    this.flush('stderr');
  }
}
