// Writes tar streams (POSIX ustar, with a pax header for what ustar cannot hold: long names and
// targets, sizes of 8 GiB and more, names that are not ASCII). Used by the CLI to pack a directory
// (packDirectory), and by tests to make archives of any shape, hostile ones included.

import { constants as fsConstants, promises as fs } from 'node:fs';
import path from 'node:path';

const BLOCK = 512;

export type TarWriteType = 'file' | 'directory' | 'symlink' | 'hardlink' | 'character-device' | 'block-device' | 'fifo';

export interface TarHeaderInput {
  name: string;
  type: TarWriteType;
  mode?: number;
  /** Bytes of data that follow (written by the caller, then tarPadding(size)). */
  size?: number;
  mtime?: number;
  linkName?: string;
  /** Extra pax records (tests). */
  pax?: Record<string, string>;
  /** A raw type flag (tests: unsupported types). */
  typeFlag?: string;
}

const FLAGS: Record<TarWriteType, string> = {
  file: '0',
  hardlink: '1',
  symlink: '2',
  'character-device': '3',
  'block-device': '4',
  directory: '5',
  fifo: '6',
};

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

function paxRecord(key: string, value: string): Buffer {
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body) + 1;
  while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body);
  return Buffer.from(`${len}${body}`);
}

function ustar(name: Buffer, flag: string, mode: number, size: number, mtime: number, link: Buffer): Buffer {
  const h = Buffer.alloc(BLOCK);
  name.copy(h, 0, 0, Math.min(100, name.length));
  h.write(octal(mode & 0o7777, 8), 100, 'latin1');
  h.write(octal(0, 8), 108, 'latin1');
  h.write(octal(0, 8), 116, 'latin1');
  h.write(octal(Math.min(size, 0o77777777777), 12), 124, 'latin1');
  h.write(octal(Math.max(0, Math.min(Math.floor(mtime), 0o77777777777)), 12), 136, 'latin1');
  h.write('        ', 148, 'latin1');
  h.write(flag, 156, 'latin1');
  link.copy(h, 157, 0, Math.min(100, link.length));
  h.write('ustar\u000000', 257, 'latin1');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(octal(sum, 7) + ' ', 148, 'latin1');
  return h;
}

/** The header block(s) of one entry: a pax header first when ustar cannot hold its name, target or size. */
export function tarHeader(e: TarHeaderInput): Buffer {
  const name = Buffer.from(e.name);
  const link = Buffer.from(e.linkName ?? '');
  const size = e.size ?? 0;
  const mode = e.mode ?? (e.type === 'directory' ? 0o755 : 0o644);
  const mtime = e.mtime ?? 0;
  const records: Buffer[] = [];
  const ascii = (b: Buffer) => b.every((c) => c < 0x80);
  if (name.length > 100 || !ascii(name)) records.push(paxRecord('path', e.name));
  if (link.length > 100 || !ascii(link)) records.push(paxRecord('linkpath', e.linkName ?? ''));
  if (size > 0o77777777777) records.push(paxRecord('size', String(size)));
  for (const [k, v] of Object.entries(e.pax ?? {})) records.push(paxRecord(k, v));
  const main = ustar(name, e.typeFlag ?? FLAGS[e.type], mode, size, mtime, link);
  if (!records.length) return main;
  const data = Buffer.concat(records);
  const paxName = Buffer.from(`PaxHeaders/${path.posix.basename(e.name).slice(0, 80)}`);
  return Buffer.concat([ustar(paxName, 'x', 0o644, data.length, mtime, Buffer.alloc(0)), data, tarPadding(data.length), main]);
}

/** Zero bytes that complete `size` bytes of data to a whole block. */
export function tarPadding(size: number): Buffer {
  return Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);
}

/** The two zero blocks that end an archive. */
export const TAR_END = Buffer.alloc(2 * BLOCK);

/** What packDirectory refuses to pack, one line. */
export class PackError extends Error {
  override readonly name = 'PackError';
}

/**
 * A tar stream of everything below `dir` (its own name left out: entries are "a.txt", "src/x.c"), in
 * name order, so the same files with the same times give the same bytes. Symbolic links are packed as
 * links (never followed); owners are left out (every file is the sandbox user's in the test). Devices,
 * FIFOs and sockets cannot be packed: a PackError names the first one.
 */
export async function* packDirectory(dir: string): AsyncGenerator<Buffer> {
  const root = path.resolve(dir);
  const st = await fs.stat(root);
  if (!st.isDirectory()) throw new PackError(`${dir} is not a directory`);
  const walk = async function* (rel: string): AsyncGenerator<Buffer> {
    const names = (await fs.readdir(path.join(root, rel))).sort();
    for (const name of names) {
      const relPath = rel ? `${rel}/${name}` : name;
      const full = path.join(root, relPath);
      const s = await fs.lstat(full);
      const mtime = Math.floor(s.mtimeMs / 1000);
      const mode = s.mode & 0o777;
      if (s.isDirectory()) {
        yield tarHeader({ name: `${relPath}/`, type: 'directory', mode, mtime });
        yield* walk(relPath);
      } else if (s.isSymbolicLink()) {
        yield tarHeader({ name: relPath, type: 'symlink', mode: 0o777, mtime, linkName: await fs.readlink(full) });
      } else if (s.isFile()) {
        const handle = await fs.open(full, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
        try {
          const size = (await handle.stat()).size;
          yield tarHeader({ name: relPath, type: 'file', mode, mtime, size });
          let left = size;
          const buf = Buffer.alloc(Math.min(1024 * 1024, Math.max(size, 1)));
          while (left > 0) {
            const { bytesRead } = await handle.read(buf, 0, Math.min(buf.length, left), size - left);
            if (bytesRead === 0) throw new PackError(`${full} shrank while it was packed`);
            left -= bytesRead;
            yield Buffer.from(buf.subarray(0, bytesRead));
          }
          yield tarPadding(size);
        } finally {
          await handle.close();
        }
      } else {
        throw new PackError(`${full} is ${s.isFIFO() ? 'a FIFO' : s.isSocket() ? 'a socket' : 'a device file'}: a bundle holds files, directories and links only`);
      }
    }
  };
  yield* walk('');
  yield TAR_END;
}
