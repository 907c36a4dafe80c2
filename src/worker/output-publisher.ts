import { completeUtf8Length, decodeOutput } from '../domain/output-text';
import type { EventBus } from '../events/bus';

const FLUSH_MS = 50;
const FLUSH_BYTES = 16 * 1024;

/**
 * Live output of one run, published in chunks (at most every 50 ms or 16 KiB) with byte offsets. Output
 * is bytes, a chunk's data is text: decoded as the result row is (NUL and invalid UTF-8 as U+FFFD), and
 * never cut inside a UTF-8 sequence (an incomplete one waits for the next chunk; flushAll() ends it).
 */
export class OutputPublisher {
  private readonly pending = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
  private readonly pendingBytes = { stdout: 0, stderr: 0 };
  private readonly offsets = { stdout: 0, stderr: 0 };
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly events: Pick<EventBus, 'emit'>,
    private readonly testId: string,
  ) {}

  push(stream: 'stdout' | 'stderr', chunk: Buffer): void {
    this.pending[stream].push(chunk);
    this.pendingBytes[stream] += chunk.length;
    if (this.pendingBytes[stream] >= FLUSH_BYTES) this.flush(stream, false);
    else this.timer ??= setTimeout(() => this.flushBoth(false), FLUSH_MS);
  }

  private flush(stream: 'stdout' | 'stderr', final: boolean): void {
    if (!this.pending[stream].length) return;
    const all = Buffer.concat(this.pending[stream]);
    const cut = final ? all.length : completeUtf8Length(all);
    const rest = all.subarray(cut);
    this.pending[stream] = rest.length ? [rest] : [];
    this.pendingBytes[stream] = rest.length;
    if (cut === 0) return;
    this.events.emit('output', { testId: this.testId, stream, data: decodeOutput(all.subarray(0, cut)), offset: this.offsets[stream] });
    this.offsets[stream] += cut;
  }

  private flushBoth(final: boolean): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.flush('stdout', final);
    this.flush('stderr', final); // an incomplete sequence held back waits for more bytes, or for the end
  }

  /** Publishes everything still pending (the end of the run). */
  flushAll(): void {
    this.flushBoth(true);
  }
}
