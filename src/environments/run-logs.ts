// The complete logs of a run, as files in its artifact dir: stdout.log and stderr.log written as the
// output arrives (never held in memory), and each service's log copied out once the run ended. Each is
// byte-exact (NUL, invalid UTF-8: what the test wrote) up to the log limit; beyond it the log is cut and
// ends with one marker line saying how many bytes were dropped. Used by every driver.

import { constants, promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { CollectedFile } from './driver';

/** MAX_LOG_BYTES default: 64 MiB for each log of a test (config.ts passes the configured one). */
export const DEFAULT_MAX_LOG_BYTES = 64 * 1024 * 1024;
export const STDOUT_LOG = 'stdout.log';
export const STDERR_LOG = 'stderr.log';

/** Bytes queued for the disk beyond which the writer asks its source to pause (backpressure). */
const HIGH_WATER_BYTES = 1024 * 1024;
const COPY_CHUNK = 256 * 1024;

/** The artifact name of a service's log: `service-<name>.log` (name made safe; the index when nothing is left). */
export function serviceLogArtifactName(name: string, index: number): string {
  const safe = name.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_').slice(0, 100);
  return `service-${safe || index}.log`;
}

/** The line that ends a cut log (on a line of its own). */
export function cutMarker(limit: number, dropped: number, endsWithNewline: boolean): string {
  return `${endsWithNewline ? '' : '\n'}[test-orchestrator: log cut at the log limit of ${limit} bytes (MAX_LOG_BYTES): ${dropped} more bytes were dropped]\n`;
}

/** A note for the result naming a cut log. */
export function cutNote(name: string, limit: number, dropped: number): string {
  return `${name} cut at the log limit of ${limit} bytes: ${dropped} bytes dropped`;
}

export interface LogEnd {
  file: CollectedFile;
  /** Bytes beyond the limit, not in the file. */
  dropped: number;
  /** Set when the file could not be written in full (the host's disk): what it holds is still exact. */
  error?: string;
}

/**
 * One stream's log, written as it arrives: the first `limit` bytes exactly, the rest counted. write()
 * says false when the disk lags by more than HIGH_WATER_BYTES: the caller pauses its source until
 * onDrain. close() appends the marker when bytes were dropped.
 */
export class StreamLog {
  private queue: Buffer[] = [];
  private queued = 0;
  private pumping: Promise<void> | null = null;
  private drainWaiter: (() => void) | null = null;
  private error: Error | null = null;
  private kept = 0;
  private lastByte = -1;
  private dropped = 0;
  private closed = false;
  private ending: Promise<LogEnd> | null = null;

  private constructor(
    private readonly handle: FileHandle,
    readonly name: string,
    readonly filePath: string,
    private readonly limit: number,
  ) {}

  /** Creates (or empties: an artifact dir reused by a caller) the file; never through a link. */
  static async open(dir: string, name: string, limit: number): Promise<StreamLog> {
    await fs.mkdir(dir, { recursive: true });
    const file = path.join(dir, name);
    const handle = await fs.open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o600);
    return new StreamLog(handle, name, file, limit);
  }

  write(chunk: Buffer): boolean {
    if (this.closed) return true;
    const room = Math.max(0, this.limit - this.kept);
    const part = chunk.length <= room ? chunk : chunk.subarray(0, room);
    this.dropped += chunk.length - part.length;
    if (part.length > 0 && this.error === null) {
      // a copy: the caller's buffer may be reused once this returns
      this.queue.push(Buffer.from(part));
      this.queued += part.length;
      this.kept += part.length;
      this.lastByte = part[part.length - 1];
      this.pump();
    }
    return this.queued < HIGH_WATER_BYTES;
  }

  /** Bytes of the stream known to lie beyond what was written (not read at all). */
  countDropped(n: number): void {
    this.dropped += n;
  }

  /** Calls `fn` once the queue is below the high-water mark again (at once when it is). */
  onDrain(fn: () => void): void {
    if (this.queued < HIGH_WATER_BYTES || this.error) fn();
    else this.drainWaiter = fn;
  }

  private pump(): void {
    if (this.pumping) return;
    this.pumping = (async () => {
      while (this.queue.length && this.error === null) {
        const bufs = this.queue.splice(0);
        const data = bufs.length === 1 ? bufs[0] : Buffer.concat(bufs);
        try {
          for (let off = 0; off < data.length; ) off += (await this.handle.write(data, off)).bytesWritten;
        } catch (err) {
          this.error = err as Error;
          this.queue = [];
        }
        this.queued -= data.length;
        if (this.queued < HIGH_WATER_BYTES || this.error) this.wakeDrain();
      }
      this.queued = 0;
    })().finally(() => {
      this.pumping = null;
      if (this.queue.length && !this.error) this.pump();
    });
  }

  private wakeDrain(): void {
    const w = this.drainWaiter;
    this.drainWaiter = null;
    w?.();
  }

  /** Waits for every queued byte, appends the cut marker when bytes were dropped, closes the file (once). */
  close(): Promise<LogEnd> {
    this.ending ??= this.end();
    return this.ending;
  }

  private async end(): Promise<LogEnd> {
    this.closed = true;
    while (this.pumping) await this.pumping;
    let size = this.kept;
    if (this.dropped > 0 && this.error === null) {
      const marker = Buffer.from(cutMarker(this.limit, this.dropped, this.kept === 0 || this.lastByte === 0x0a));
      try {
        await this.handle.write(marker);
        size += marker.length;
      } catch (err) {
        this.error = err as Error;
      }
    }
    await this.handle.close().catch((err: Error) => {
      this.error ??= err;
    });
    if (this.error) size = await fs.lstat(this.filePath).then((s) => s.size, () => 0);
    this.wakeDrain();
    return {
      file: { name: this.name, kind: 'LOG', path: this.filePath, sizeBytes: size },
      dropped: this.dropped,
      ...(this.error ? { error: this.error.message } : {}),
    };
  }
}

/**
 * Copies a log a process of the run wrote (a service's, in the control dir the sandbox user owns) into
 * `dir` as `name`: its first `limit` bytes, then the cut marker when it was longer. Never follows a link
 * or blocks on a FIFO there: such an entry (or none) is `{ skipped }`, saying why.
 */
export async function copyLog(source: string, dir: string, name: string, limit: number): Promise<LogEnd | { skipped: string | null }> {
  let src: FileHandle;
  try {
    src = await fs.open(source, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { skipped: null }; // the service wrote nothing
    return { skipped: code === 'ELOOP' ? 'it is a symbolic link' : `it cannot be opened (${code ?? (err as Error).message})` };
  }
  try {
    const st = await src.stat();
    if (!st.isFile()) return { skipped: 'it is not a regular file' };
    const log = await StreamLog.open(dir, name, limit);
    const buf = Buffer.allocUnsafe(COPY_CHUNK);
    // its writers are dead: it holds what it will hold; only what fits is read, the rest is counted
    let pos = 0;
    while (pos < limit) {
      const { bytesRead } = await src.read(buf, 0, Math.min(COPY_CHUNK, limit - pos), pos);
      if (bytesRead === 0) break;
      pos += bytesRead;
      if (!log.write(buf.subarray(0, bytesRead))) await new Promise<void>((resolve) => log.onDrain(resolve));
    }
    log.countDropped(Math.max(0, st.size - pos));
    return await log.close();
  } finally {
    await src.close().catch((err: Error) => process.emitWarning(`closing ${source}: ${err.message}`));
  }
}

/** The two streams' logs of a run, open while it runs. */
export interface RunLogs {
  stdout: StreamLog;
  stderr: StreamLog;
  limit: number;
}

export async function openRunLogs(dir: string, limit: number): Promise<RunLogs> {
  const stdout = await StreamLog.open(dir, STDOUT_LOG, limit);
  try {
    return { stdout, stderr: await StreamLog.open(dir, STDERR_LOG, limit), limit };
  } catch (err) {
    await stdout.close();
    throw err;
  }
}

/**
 * Ends a run's logs: stdout.log and stderr.log closed, each service's log copied in. Every log is a
 * LOG file of the run; the notes say what was cut, left out or could not be written in full.
 */
export async function endRunLogs(
  logs: RunLogs,
  dir: string,
  services: { source: string; name: string }[],
  onIncomplete: (name: string, error: string) => void,
): Promise<{ files: CollectedFile[]; notes: string[] }> {
  const ends: LogEnd[] = [await logs.stdout.close(), await logs.stderr.close()];
  const notes: string[] = [];
  for (const svc of services) {
    const end = await copyLog(svc.source, dir, svc.name, logs.limit);
    if ('file' in end) ends.push(end);
    else if (end.skipped) notes.push(`${svc.name} left out: ${end.skipped}`);
  }
  for (const e of ends) {
    if (e.dropped > 0) notes.push(cutNote(e.file.name, logs.limit, e.dropped));
    if (e.error) {
      notes.push(`${e.file.name} is incomplete: ${e.error}`);
      onIncomplete(e.file.name, e.error);
    }
  }
  return { files: ends.map((e) => e.file), notes };
}
