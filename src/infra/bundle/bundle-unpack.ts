// Unpacks a tar stream (tar-reader.ts) into a fresh directory, checking every entry before anything of
// it is written. Refused, each with a one-line BundleError naming the entry: an absolute path, "..",
// any other path domain/work-files.ts refuses (over-long names, control characters), a device file or
// FIFO, a setuid or setgid bit, a symbolic link whose target leaves the bundle (followed through the
// bundle's own links, as the kernel would), a hard link to anything but a regular file earlier in the
// archive, an entry below a file or a link, an entry given twice, and more entries or unpacked bytes
// than the limits (checked from the headers, before the data is read: a gzip bomb stops at its first
// header).
//
// Why this is safe although the API may run as root: the destination is a directory the caller has
// just made, private to this process's user (in the bundle store's tmp/, mode 0700), so nobody else can
// put anything in it while it is written; every directory below it is made here, one by one, after its
// entry was checked; files are created with O_CREAT|O_EXCL|O_NOFOLLOW (never over something, never
// through a link); symbolic links are created last, once every entry is written, and no entry may be
// below one — so no write ever goes through a link, whatever the archive says.

import { constants as fsConstants, promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { relativePathProblem } from '../../domain/work-files';
import { BundleError } from '../tar/bundle-error';
import { readTar, shownName, type EntrySink, type TarEntry, type TarReadLimits } from '../tar/tar-reader';

export interface UnpackLimits {
  /** Entries of every kind (directories too, also those implied by a path). */
  maxEntries: number;
  /** Bytes of the files unpacked (a hard link counts its file again). */
  maxBytes: number;
  /** Names of the variables that set them, for the messages. */
  names?: { maxEntries: string; maxBytes: string };
  tar?: TarReadLimits;
}

export interface UnpackResult {
  /** Entries that are not directories: files, symbolic links, hard links. */
  files: number;
  /** Every entry made, directories included. */
  entries: number;
  /** Bytes of the files. */
  bytes: number;
}

type Node =
  | { type: 'directory'; mode: number; mtime: number | null }
  | { type: 'file'; size: number }
  | { type: 'symlink'; target: string; mtime: number };

const MAX_LINK_HOPS = 40;

/** The entry's path inside the bundle ('' for its root), or a BundleError saying why it has none. */
export function entryPath(entry: Pick<TarEntry, 'name' | 'type'>): string {
  const label = `entry ${shownName(entry.name)}`;
  if (entry.name.startsWith('/')) throw new BundleError(400, `${label}: an absolute path (entries must be relative to the bundle)`);
  let p = entry.name;
  while (p.startsWith('./')) p = p.slice(2);
  if (entry.type === 'directory' && p.endsWith('/')) p = p.slice(0, -1);
  if (p === '' || p === '.') {
    if (entry.type === 'directory') return '';
    throw new BundleError(400, `${label}: names the bundle's root but is not a directory`);
  }
  const problem = relativePathProblem(p);
  if (problem) throw new BundleError(400, `${label}: the path ${problem}`);
  return p;
}

/**
 * Where a symbolic link at `linkPath` with `target` ends up, followed through the links of `nodes`;
 * null when it stays in the bundle (it may dangle), else why not.
 */
export function linkEscape(linkPath: string, target: string, nodes: ReadonlyMap<string, Node>): string | null {
  if (target.startsWith('/')) return 'points at an absolute path';
  const stack = linkPath.split('/').slice(0, -1);
  let queue = target.split('/').filter((x) => x !== '' && x !== '.');
  let hops = 0;
  while (queue.length) {
    const part = queue.shift()!;
    if (part === '..') {
      if (!stack.length) return 'leaves the bundle';
      stack.pop();
      continue;
    }
    stack.push(part);
    const node = nodes.get(stack.join('/'));
    if (node?.type === 'symlink') {
      if (++hops > MAX_LINK_HOPS) return 'is a loop of symbolic links';
      if (node.target.startsWith('/')) return 'goes through a link to an absolute path';
      stack.pop();
      queue = [...node.target.split('/').filter((x) => x !== '' && x !== '.'), ...queue];
    }
  }
  return null;
}

/** Unpacks `source` (a decompressed tar stream) into `dest`, an empty directory made by the caller. */
export async function unpackTar(source: AsyncIterable<Buffer>, dest: string, limits: UnpackLimits): Promise<UnpackResult> {
  const names = limits.names ?? { maxEntries: 'the entry limit', maxBytes: 'the size limit' };
  const nodes = new Map<string, Node>();
  const symlinks: string[] = [];
  let entries = 0;
  let files = 0;
  let bytes = 0;
  let open: FileHandle | null = null;
  const at = (p: string) => path.join(dest, p);

  const count = (label: string) => {
    if (++entries > limits.maxEntries) throw new BundleError(413, `${label}: the bundle holds more than ${limits.maxEntries} entries (${names.maxEntries})`);
  };
  const addBytes = (n: number, label: string) => {
    bytes += n;
    if (bytes > limits.maxBytes) throw new BundleError(413, `${label}: unpacked, the bundle would be more than ${limits.maxBytes} bytes (${names.maxBytes})`);
  };

  const onEntry = async (entry: TarEntry): Promise<EntrySink | null> => {
    const p = entryPath(entry);
    const label = `entry ${shownName(p || entry.name)}`;
    if (entry.type === 'character-device' || entry.type === 'block-device') throw new BundleError(400, `${label}: a ${entry.type.replace('-', ' ')} is not allowed in a bundle`);
    if (entry.type === 'fifo') throw new BundleError(400, `${label}: a FIFO (named pipe) is not allowed in a bundle`);
    if (entry.mode & 0o6000) {
      throw new BundleError(400, `${label}: a ${entry.mode & 0o4000 ? 'setuid' : 'setgid'} bit (mode ${entry.mode.toString(8)}) is not allowed in a bundle`);
    }
    if (p === '') return null; // "./": the root, made by the caller
    // every directory above it: made here, or one of the archive's; never a file or a link
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      const node = nodes.get(dir);
      if (!node) {
        count(label);
        await fs.mkdir(at(dir), { mode: 0o700 });
        nodes.set(dir, { type: 'directory', mode: 0o755, mtime: null });
      } else if (node.type !== 'directory') {
        throw new BundleError(400, `${label}: is below ${shownName(dir)}, which is a ${node.type === 'symlink' ? 'symbolic link' : 'file'}, not a directory`);
      }
    }
    const existing = nodes.get(p);
    if (existing) {
      if (existing.type === 'directory' && entry.type === 'directory') {
        nodes.set(p, { type: 'directory', mode: (entry.mode & 0o777) | 0o700, mtime: entry.mtime });
        return null;
      }
      throw new BundleError(400, `${label}: appears twice in the archive`);
    }
    count(label);
    switch (entry.type) {
      case 'directory':
        await fs.mkdir(at(p), { mode: 0o700 });
        nodes.set(p, { type: 'directory', mode: (entry.mode & 0o777) | 0o700, mtime: entry.mtime });
        return null;
      case 'symlink': {
        const t = entry.linkName;
        if (t === '') throw new BundleError(400, `${label}: a symbolic link without a target`);
        if (t.startsWith('/')) throw new BundleError(400, `${label}: a symbolic link to the absolute path ${shownName(t)} (links must stay in the bundle)`);
        if (Buffer.byteLength(t) > 4096 || /[\u0000-\u001f\u007f]/.test(t)) throw new BundleError(400, `${label}: the link target is longer than 4096 bytes or holds control characters`);
        nodes.set(p, { type: 'symlink', target: t, mtime: entry.mtime });
        symlinks.push(p);
        files++;
        return null;
      }
      case 'hardlink': {
        let target: string;
        try {
          target = entryPath({ name: entry.linkName, type: 'file' });
        } catch (err) {
          throw new BundleError(400, `${label}: a hard link to ${shownName(entry.linkName)}, outside the bundle (${(err as Error).message.replace(/^entry "[^"]*": /, '')})`);
        }
        const node = nodes.get(target);
        if (!node || node.type !== 'file') {
          throw new BundleError(400, `${label}: a hard link to ${shownName(entry.linkName)}, which is not a regular file earlier in the archive`);
        }
        addBytes(node.size, label);
        await fs.link(at(target), at(p));
        nodes.set(p, { type: 'file', size: node.size });
        files++;
        return null;
      }
      case 'file': {
        addBytes(entry.size, label);
        const mode = (entry.mode & 0o777) | 0o600;
        const handle = await fs.open(at(p), fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, 0o600);
        open = handle;
        nodes.set(p, { type: 'file', size: entry.size });
        files++;
        let written = 0;
        return {
          async write(chunk) {
            for (let off = 0; off < chunk.length; ) {
              const { bytesWritten } = await handle.write(chunk, off, chunk.length - off, written);
              off += bytesWritten;
              written += bytesWritten;
            }
          },
          async end() {
            await handle.chmod(mode);
            await handle.utimes(entry.mtime, entry.mtime);
            open = null;
            await handle.close();
          },
        };
      }
    }
    return null;
  };

  try {
    await readTar(source, onEntry, limits.tar);
    // links last: every entry is written, and none can be below a link (refused above)
    for (const p of symlinks) {
      const node = nodes.get(p) as Extract<Node, { type: 'symlink' }>;
      const why = linkEscape(p, node.target, nodes);
      if (why) throw new BundleError(400, `entry ${shownName(p)}: a symbolic link to ${shownName(node.target)} that ${why}`);
    }
    for (const p of symlinks) {
      const node = nodes.get(p) as Extract<Node, { type: 'symlink' }>;
      await fs.symlink(node.target, at(p));
      await fs.lutimes(at(p), node.mtime, node.mtime);
    }
    // directories' own modes and times once nothing more is written in them, deepest first
    const dirs = [...nodes.entries()].filter(([, n]) => n.type === 'directory').sort((a, b) => b[0].length - a[0].length);
    for (const [p, n] of dirs) {
      const d = n as Extract<Node, { type: 'directory' }>;
      await fs.chmod(at(p), d.mode);
      if (d.mtime !== null) await fs.utimes(at(p), d.mtime, d.mtime);
    }
    return { files, entries, bytes };
  } finally {
    const h = open as FileHandle | null;
    if (h) await h.close().catch(() => undefined); // the unpack failed already: that error is the one to report
  }
}
