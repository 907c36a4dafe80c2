// Keeps the first `limit` bytes of a stream, counts the rest and drops it.

export class OutputCapture {
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  /** Bytes received beyond the limit (dropped). */
  dropped = 0;

  constructor(private readonly limit: number) {}

  /** Stores what fits and returns that part (empty when nothing fits), for live forwarding. */
  push(chunk: Buffer): Buffer {
    const room = Math.max(0, this.limit - this.kept);
    const part = chunk.length <= room ? chunk : chunk.subarray(0, room);
    if (part.length > 0) {
      this.chunks.push(part);
      this.kept += part.length;
    }
    this.dropped += chunk.length - part.length;
    return part;
  }

  get truncated(): boolean {
    return this.dropped > 0;
  }

  /** The kept bytes, exactly. */
  get bytes(): Buffer {
    return Buffer.concat(this.chunks, this.kept);
  }

  get text(): string {
    return this.bytes.toString('utf8');
  }
}
