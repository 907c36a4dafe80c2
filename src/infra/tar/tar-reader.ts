// A small, strict reader of tar streams (POSIX ustar and pax, GNU long names): it turns 512-byte
// blocks into entries and hands each regular file's bytes to a sink, never holding a file in memory.
// It decides nothing about where an entry goes (bundle-unpack.ts does): it checks the format —
// header checksums, octal fields, magic, pax records, the end-of-archive blocks — and the limits
// that bound what a hostile stream can make it read (metadata sizes, trailing bytes). Anything it does
// not know is refused, never skipped: sparse files, multi-volume parts, volume labels.

import { BundleError } from './bundle-error';

export type TarEntryType = 'file' | 'directory' | 'symlink' | 'hardlink' | 'character-device' | 'block-device' | 'fifo';

export interface TarEntry {
  /** The name as the archive gives it (pax `path`, GNU long name, or ustar prefix + name), decoded as UTF-8. */
  name: string;
  type: TarEntryType;
  /** Permission bits and setuid/setgid/sticky (mode & 0o7777). */
  mode: number;
  /** Bytes of data that follow (regular files; 0 for the rest). */
  size: number;
  /** Seconds since the epoch. */
  mtime: number;
  /** Target of a symbolic or hard link. */
  linkName: string;
}

/** Receives a regular file's bytes, in order; `end` once they are all written. */
export interface EntrySink {
  write(chunk: Buffer): Promise<void>;
  end(): Promise<void>;
}

export interface TarReadLimits {
  /** Bytes of one pax extended header or GNU long name/link. */
  maxMetaBytes: number;
  /** Bytes of every pax header and long name together. */
  maxMetaTotalBytes: number;
  /** Bytes after the end-of-archive blocks (they must be zeros: the padding of a tar record). */
  maxTrailingBytes: number;
}

export const DEFAULT_TAR_READ_LIMITS: TarReadLimits = {
  maxMetaBytes: 64 * 1024,
  maxMetaTotalBytes: 16 * 1024 * 1024,
  maxTrailingBytes: 1024 * 1024,
};

const BLOCK = 512;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A name for a message: at most 200 characters, control characters as "?". */
export function shownName(name: string): string {
  const short = name.length > 200 ? `${name.slice(0, 200)}…` : name;
  return JSON.stringify(short.replace(/[\u0000-\u001f\u007f]/g, '?'));
}

function cString(block: Buffer, start: number, length: number): Buffer {
  const field = block.subarray(start, start + length);
  const nul = field.indexOf(0);
  return nul === -1 ? field : field.subarray(0, nul);
}

function decodeName(bytes: Buffer, what: string): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new BundleError(400, `${what} ${shownName(bytes.toString('latin1'))} is not UTF-8 text`);
  }
}

/** An octal number field (digits, then NUL or spaces), or GNU's base-256 form for large values. */
function numberField(block: Buffer, start: number, length: number, field: string, entry: () => string): number {
  const raw = block.subarray(start, start + length);
  if (raw[0] & 0x80) {
    // base-256: big-endian two's complement in the rest of the field; negative values are refused
    if (raw[0] & 0x40) throw new BundleError(400, `${entry()}: the ${field} field is negative`);
    let n = raw[0] & 0x3f;
    for (let i = 1; i < raw.length; i++) {
      n = n * 256 + raw[i];
      if (n > Number.MAX_SAFE_INTEGER) throw new BundleError(400, `${entry()}: the ${field} field is too large`);
    }
    return n;
  }
  const text = raw.toString('latin1').replace(/[\0 ]+$/, '').replace(/^ +/, '');
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new BundleError(400, `${entry()}: the ${field} field is not an octal number`);
  const n = parseInt(text, 8);
  if (!Number.isSafeInteger(n)) throw new BundleError(400, `${entry()}: the ${field} field is too large`);
  return n;
}

function checksumOk(block: Buffer, entry: () => string): boolean {
  const stored = numberField(block, 148, 8, 'checksum', entry);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i];
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return stored === unsigned || stored === signed; // some old tars summed signed chars
}

/** pax records "LEN KEY=VALUE\n", strictly: each LEN counts its whole record. */
export function parsePax(data: Buffer, entry: () => string): Map<string, string> {
  const out = new Map<string, string>();
  let off = 0;
  while (off < data.length) {
    const space = data.indexOf(0x20, off);
    if (space === -1 || space - off > 20) throw new BundleError(400, `${entry()}: a malformed pax header record`);
    const lenText = data.subarray(off, space).toString('latin1');
    if (!/^[1-9][0-9]*$/.test(lenText)) throw new BundleError(400, `${entry()}: a malformed pax header record`);
    const len = Number(lenText);
    const end = off + len;
    if (end > data.length || data[end - 1] !== 0x0a) throw new BundleError(400, `${entry()}: a malformed pax header record`);
    const record = data.subarray(space + 1, end - 1);
    const eq = record.indexOf(0x3d);
    if (eq <= 0) throw new BundleError(400, `${entry()}: a malformed pax header record`);
    const key = decodeName(record.subarray(0, eq), 'a pax key');
    const value = record.subarray(eq + 1);
    if (value.includes(0)) throw new BundleError(400, `${entry()}: the pax record "${key.slice(0, 40)}" holds a NUL byte`);
    out.set(key, decodeName(value, `the pax record ${key.slice(0, 40)}`));
    off = end;
  }
  return out;
}

function paxNumber(value: string, key: string, entry: () => string, integer: boolean): number {
  if (!(integer ? /^[0-9]{1,16}$/ : /^-?[0-9]{1,16}(\.[0-9]{1,12})?$/).test(value)) {
    throw new BundleError(400, `${entry()}: the pax ${key} "${value.slice(0, 40)}" is not a number`);
  }
  const n = Number(value);
  if (integer && !Number.isSafeInteger(n)) throw new BundleError(400, `${entry()}: the pax ${key} is too large`);
  return n;
}

const TYPES: Record<string, TarEntryType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file', // contiguous file: a regular file everywhere but a few old systems
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'character-device',
  '4': 'block-device',
  '5': 'directory',
  '6': 'fifo',
};

const UNSUPPORTED: Record<string, string> = {
  S: 'a GNU sparse file',
  M: 'a part of a multi-volume archive',
  V: 'a volume label',
  D: 'a GNU dump directory',
  N: 'an old GNU long-name record',
};

type State =
  | { at: 'header' }
  | { at: 'data'; remaining: number; pad: number; sink: EntrySink | null }
  | { at: 'meta'; kind: 'pax' | 'global' | 'longname' | 'longlink'; remaining: number; pad: number; parts: Buffer[]; label: string }
  | { at: 'end'; zeroBlocks: number; trailing: number };

/**
 * Reads a whole tar stream. `onEntry` is called for every entry, in order, before its data; for a
 * regular file it returns the sink of its bytes. Resolves once the end-of-archive blocks (and only zeros
 * after them) were read; rejects with a BundleError for a malformed archive, or with what a callback threw.
 */
export async function readTar(
  source: AsyncIterable<Buffer>,
  onEntry: (entry: TarEntry) => Promise<EntrySink | null>,
  limits: TarReadLimits = DEFAULT_TAR_READ_LIMITS,
): Promise<void> {
  let state = { at: 'header' } as State;
  let pending: Buffer = Buffer.alloc(0);
  let offset = 0; // bytes of the (decompressed) stream read so far
  let metaTotal = 0;
  let entries = 0;
  let pax = new Map<string, string>();
  let longName: string | null = null;
  let longLink: string | null = null;
  let sawEnd = false;

  const header = async (block: Buffer, at: number): Promise<void> => {
    if (block.every((b) => b === 0)) {
      state = { at: 'end', zeroBlocks: 1, trailing: 0 };
      return;
    }
    const rawName = cString(block, 0, 100);
    const where = () => `the entry at byte ${at}${rawName.length ? ` (${shownName(rawName.toString('latin1'))})` : ''}`;
    const magic = block.subarray(257, 265).toString('latin1');
    const posix = magic === 'ustar\u000000';
    const gnu = magic === 'ustar  \u0000';
    if (!posix && !gnu) {
      throw new BundleError(400, entries === 0 && at === 0 ? 'the body is not a tar archive (plain, gzip or zstd): its first block has no ustar header' : `${where()}: not a ustar header (a corrupt or truncated archive?)`);
    }
    if (!checksumOk(block, where)) throw new BundleError(400, `${where()}: the header checksum is wrong (a corrupt archive?)`);
    const flag = String.fromCharCode(block[156]);
    const size = numberField(block, 124, 12, 'size', where);
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
      if (size > limits.maxMetaBytes) throw new BundleError(413, `${where()}: an extended header of ${size} bytes, more than ${limits.maxMetaBytes}`);
      metaTotal += size;
      if (metaTotal > limits.maxMetaTotalBytes) throw new BundleError(413, `${where()}: extended headers of more than ${limits.maxMetaTotalBytes} bytes in all`);
      const kind = flag === 'x' ? 'pax' : flag === 'g' ? 'global' : flag === 'L' ? 'longname' : 'longlink';
      state = { at: 'meta', kind, remaining: size, pad, parts: [], label: where() };
      if (size === 0) await endMeta();
      return;
    }
    const type = TYPES[flag];
    if (!type) {
      const what = UNSUPPORTED[flag];
      throw new BundleError(400, `${where()}: ${what ?? `an entry of unknown type "${flag.replace(/[^\x20-\x7e]/g, '?')}"`} is not supported`);
    }
    let name: string;
    if (longName !== null) name = longName;
    else {
      const prefix = posix ? cString(block, 345, 155) : Buffer.alloc(0);
      name = decodeName(prefix.length ? Buffer.concat([prefix, Buffer.from('/'), rawName]) : rawName, `the name`);
    }
    if (pax.has('path')) name = pax.get('path')!;
    let linkName = longLink ?? decodeName(cString(block, 157, 100), `the link target of ${shownName(name)}`);
    if (pax.has('linkpath')) linkName = pax.get('linkpath')!;
    const label = () => `entry ${shownName(name)}`;
    const entrySize = pax.has('size') ? paxNumber(pax.get('size')!, 'size', label, true) : size;
    const mtime = pax.has('mtime') ? paxNumber(pax.get('mtime')!, 'mtime', label, false) : numberField(block, 136, 12, 'mtime', label);
    for (const key of pax.keys()) {
      if (key.startsWith('GNU.sparse.')) throw new BundleError(400, `${label()}: a GNU sparse file is not supported`);
    }
    if (type !== 'file' && entrySize !== 0) throw new BundleError(400, `${label()}: ${type === 'directory' ? 'a directory' : `a ${type}`} with ${entrySize} bytes of data`);
    const entry: TarEntry = { name, type, mode: numberField(block, 100, 8, 'mode', label) & 0o7777, size: entrySize, mtime: Math.max(0, Math.floor(mtime)), linkName };
    pax = new Map();
    longName = null;
    longLink = null;
    entries++;
    const sink = await onEntry(entry);
    const dataPad = (BLOCK - (entrySize % BLOCK)) % BLOCK;
    if (entrySize === 0) {
      await sink?.end();
      state = { at: 'header' };
    } else state = { at: 'data', remaining: entrySize, pad: dataPad, sink };
  };

  const endMeta = async (): Promise<void> => {
    const s = state as Extract<State, { at: 'meta' }>;
    const data = Buffer.concat(s.parts);
    const label = () => s.label;
    if (s.kind === 'pax') pax = parsePax(data, label);
    else if (s.kind === 'global') parsePax(data, label); // checked, and ignored: it sets defaults for other tools
    else {
      const text = decodeName(cString(data, 0, data.length), s.kind === 'longname' ? 'the long name' : 'the long link target');
      if (s.kind === 'longname') longName = text;
      else longLink = text;
    }
    state = s.pad ? { at: 'data', remaining: 0, pad: s.pad, sink: null } : { at: 'header' };
  };

  for await (const chunk of source) {
    let data = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    let off = 0;
    for (;;) {
      const avail = data.length - off;
      const st = state as State; // assigned in header() and endMeta() too
      if (st.at === 'header') {
        if (avail < BLOCK) break;
        const at = offset;
        const block = data.subarray(off, off + BLOCK);
        off += BLOCK;
        offset += BLOCK;
        await header(block, at);
      } else if (st.at === 'data') {
        if (avail === 0) break;
        if (st.remaining > 0) {
          const n = Math.min(st.remaining, avail);
          const piece = data.subarray(off, off + n);
          off += n;
          offset += n;
          st.remaining -= n;
          if (st.sink) await st.sink.write(piece);
          if (st.remaining === 0 && st.sink) await st.sink.end();
        } else {
          const n = Math.min(st.pad, avail);
          off += n;
          offset += n;
          st.pad -= n;
          if (st.pad === 0) state = { at: 'header' };
        }
      } else if (st.at === 'meta') {
        if (avail === 0) break;
        const n = Math.min(st.remaining, avail);
        st.parts.push(Buffer.from(data.subarray(off, off + n)));
        off += n;
        offset += n;
        st.remaining -= n;
        if (st.remaining === 0) await endMeta();
      } else {
        // after the first zero block: a second one, then only zeros
        if (avail === 0) break;
        const rest = data.subarray(off);
        if (!rest.every((b) => b === 0)) {
          throw new BundleError(400, st.zeroBlocks < 2 && rest.length >= BLOCK ? `a zero block at byte ${offset - BLOCK} in the middle of the archive` : `data after the end of the archive at byte ${offset}`);
        }
        st.trailing += rest.length;
        if (st.trailing >= BLOCK) st.zeroBlocks = 2;
        if (st.trailing > limits.maxTrailingBytes) throw new BundleError(413, `more than ${limits.maxTrailingBytes} bytes after the end of the archive`);
        offset += rest.length;
        off = data.length;
        sawEnd = true;
      }
    }
    pending = off < data.length ? Buffer.from(data.subarray(off)) : Buffer.alloc(0);
  }
  if ((state as State).at === 'end') sawEnd = true;
  if (!sawEnd || pending.length) {
    if (offset === 0 && pending.length === 0) throw new BundleError(400, 'the body is empty: send a tar archive');
    throw new BundleError(400, `the archive ends at byte ${offset + pending.length} without its end-of-archive blocks (truncated?)`);
  }
}
