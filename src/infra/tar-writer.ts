// Writes a tar stream (POSIX ustar, with a pax extended header where a path is not short ASCII or a
// size does not fit the octal field): entries one after the other, each header then its bytes, never
// holding an entry in memory. Readable by GNU tar, bsdtar and every tar library.

import type { Readable, Writable } from 'node:stream';
import { once } from 'node:events';

const BLOCK = 512;
/** The largest size the 11-digit octal field holds. */
const MAX_OCTAL_SIZE = 0o77777777777;

function octal(n: number, width: number): string {
  return `${Math.floor(n).toString(8).padStart(width - 1, '0')}\0`;
}

function header(name: string, size: number, mtime: Date, type: '0' | 'x'): Buffer {
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 100, 'utf8');
  h.write(octal(0o644, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii'); // uid
  h.write(octal(0, 8), 116, 'ascii'); // gid
  h.write(octal(Math.min(size, MAX_OCTAL_SIZE), 12), 124, 'ascii');
  h.write(octal(Math.max(0, mtime.getTime() / 1000), 12), 136, 'ascii');
  h.write('        ', 148, 'ascii'); // the checksum counts its own field as spaces
  h.write(type, 156, 'ascii');
  h.write('ustar\u000000', 257, 'ascii');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return h;
}

/** One pax record, `<length> <key>=<value>\n`, whose length counts itself. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const bytes = Buffer.byteLength(body);
  const digits = String(bytes).length;
  let len = bytes + digits;
  if (String(len).length > digits) len += 1;
  return `${len}${body}`;
}

function padding(size: number): Buffer {
  const rest = size % BLOCK;
  return Buffer.alloc(rest === 0 ? 0 : BLOCK - rest);
}

/** The header blocks of one regular file (a pax header first when needed). */
export function entryHeader(path: string, size: number, mtime: Date): Buffer {
  const ascii = /^[\x20-\x7e]*$/.test(path);
  const records = [
    ...(ascii && path.length <= 100 ? [] : [paxRecord('path', path)]),
    ...(size > MAX_OCTAL_SIZE ? [paxRecord('size', String(size))] : []),
  ];
  const short = ascii ? path.slice(0, 100) : path.replace(/[^\x20-\x7e]/g, '_').slice(0, 100);
  const main = header(short, size, mtime, '0');
  if (!records.length) return main;
  const pax = Buffer.from(records.join(''), 'utf8');
  return Buffer.concat([header(`PaxHeader/${short}`.slice(0, 100), pax.length, mtime, 'x'), pax, padding(pax.length), main]);
}

/** The two zero blocks that end an archive. */
export const TAR_END = Buffer.alloc(2 * BLOCK);

/** Small writes (headers, padding, small files) are gathered up to this before they go out. */
const GATHER_BYTES = 64 * 1024;

/** Writes to `out`, waiting for it to drain; rejects once it closed (the client went away). */
export class TarWriter {
  private closed = false;
  private gathered: Buffer[] = [];
  private gatheredBytes = 0;

  constructor(private readonly out: Writable) {
    out.once('close', () => {
      this.closed = true;
    });
  }

  get aborted(): boolean {
    return this.closed;
  }

  private async write(chunk: Buffer): Promise<void> {
    if (this.closed) throw new Error('the client closed the connection');
    if (chunk.length < GATHER_BYTES) {
      this.gathered.push(chunk);
      this.gatheredBytes += chunk.length;
      if (this.gatheredBytes < GATHER_BYTES) return;
      chunk = Buffer.concat(this.gathered, this.gatheredBytes);
    } else if (this.gatheredBytes) {
      await this.send(Buffer.concat(this.gathered, this.gatheredBytes));
    }
    this.gathered = [];
    this.gatheredBytes = 0;
    await this.send(chunk);
  }

  private async send(chunk: Buffer): Promise<void> {
    if (this.closed) throw new Error('the client closed the connection');
    if (!this.out.write(chunk)) {
      await Promise.race([once(this.out, 'drain'), once(this.out, 'close')]);
      if (this.closed) throw new Error('the client closed the connection');
    }
  }

  /**
   * One entry of `size` bytes read from `data`. A source that ends early or fails is padded with zeros
   * to its size (the archive stays readable); the error is returned for the caller to report.
   */
  async entry(path: string, size: number, mtime: Date, data: Readable | Buffer): Promise<Error | null> {
    await this.write(entryHeader(path, size, mtime));
    let written = 0;
    let failure: Error | null = null;
    if (Buffer.isBuffer(data)) {
      await this.write(data.subarray(0, size));
      written = Math.min(size, data.length);
    } else {
      try {
        for await (const chunk of data) {
          const c = chunk as Buffer;
          const part = c.length <= size - written ? c : c.subarray(0, size - written);
          if (part.length) await this.write(part);
          written += part.length;
          if (written >= size) break;
        }
      } catch (err) {
        if (this.closed) throw err;
        failure = err as Error;
      } finally {
        data.destroy();
      }
    }
    if (written < size) {
      failure ??= new Error(`the content ended after ${written} of ${size} bytes`);
      for (let left = size - written; left > 0; left -= 65536) await this.write(Buffer.alloc(Math.min(left, 65536)));
    }
    await this.write(padding(size));
    return failure;
  }

  async end(): Promise<void> {
    await this.write(TAR_END);
    if (this.gatheredBytes) await this.send(Buffer.concat(this.gathered, this.gatheredBytes));
    this.gathered = [];
    this.gatheredBytes = 0;
    this.out.end();
  }
}
