// Where artifacts' bytes live: one interface used by the worker (which stores them) and the API (which
// serves them and deletes them with their plans). Content-addressed: the key is the sha256 of the bytes,
// so the same content is stored once whoever writes it. The embedded default is a directory
// (ARTIFACT_DIR); in scaled mode every process must see the same one (a shared filesystem) until an
// object-store backend implements this interface.

import { createHash, randomBytes } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { copySparse } from './sparse-copy';

export interface PutResult {
  key: string;
  sha256: string;
  size: number;
  /** This call added the blob (false: the same content was stored already). */
  created: boolean;
}

/** One blob opened for reading: its size, then one stream of it (or close() when none is wanted). */
export interface BlobReader {
  size: number;
  /** The bytes from `start` to `end` inclusive (default: all of them); closes the blob when done. */
  stream(range?: { start: number; end: number }): Readable;
  /** All of it at once, then closed: for small blobs (one read, no stream). */
  read(): Promise<Buffer>;
  close(): Promise<void>;
}

/** The blob is not in the store (deleted, or written where this process does not look): a 404. */
export class BlobMissingError extends Error {
  override readonly name = 'BlobMissingError';
}

/** The store cannot be read or written now (not mounted, no permission, an I/O error): a 503. */
export class StoreUnavailableError extends Error {
  override readonly name = 'StoreUnavailableError';
}

export interface ArtifactStore {
  /** Where the store is, for the log and the status (a directory; a bucket one day). */
  readonly location: string;
  /** Stores a file's content (the source is never followed through a final link). */
  putFile(path: string): Promise<PutResult>;
  putBytes(data: Buffer | string): Promise<PutResult>;
  has(key: string): Promise<boolean>;
  /** BlobMissingError or StoreUnavailableError when it cannot be read. */
  open(key: string): Promise<BlobReader>;
  /** Removes a blob: its size when it was there, null when it was not. */
  remove(key: string): Promise<number | null>;
  /** Every blob with its size, a batch at a time (a usage scan). */
  list(): AsyncIterable<{ key: string; size: number }[]>;
  /** Throws StoreUnavailableError, saying why, when the store cannot be used now. */
  check(): Promise<void>;
}

const KEY = /^[0-9a-f]{64}$/;
const LIST_BATCH = 1000;

// The messages of these errors reach HTTP clients: they say why, never where on the host.

/** Errors of the filesystem that say the store itself is unusable, not one blob. */
function unavailable(err: NodeJS.ErrnoException): StoreUnavailableError {
  return new StoreUnavailableError(`the artifact store cannot be read now (${err.code ?? err.message}); try again later`);
}

/** Blobs as files: ROOT/<first two hex digits>/<sha256>, written to ROOT/tmp first and linked in place. */
export class DirectoryArtifactStore implements ArtifactStore {
  private made = false;

  constructor(private readonly root: string) {}

  get location(): string {
    return this.root;
  }

  pathOf(key: string): string {
    if (!KEY.test(key)) throw new BlobMissingError('the artifact has no valid storage key');
    return join(this.root, key.slice(0, 2), key);
  }

  private async tmpFile(): Promise<string> {
    const tmpDir = join(this.root, 'tmp');
    if (!this.made) {
      await fs.mkdir(tmpDir, { recursive: true });
      this.made = true;
    }
    return join(tmpDir, `${process.pid}.${randomBytes(8).toString('hex')}.tmp`);
  }

  /**
   * Moves a finished temporary file to its key. link() is the one atomic "create if absent" of a
   * filesystem (shared ones too): exactly one writer of a content creates it, and no reader ever sees
   * half a blob. The temporary name is removed either way.
   */
  private async place(tmp: string, key: string): Promise<boolean> {
    const dest = this.pathOf(key);
    try {
      await fs.mkdir(dirname(dest), { recursive: true });
      await fs.link(tmp, dest);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    } finally {
      await fs.rm(tmp, { force: true });
    }
  }

  /**
   * Stores a file: one pass hashes it and writes a temporary copy, which becomes the content's key.
   * The copy is sparse (infra/sparse-copy.ts): a core dump keeps its holes, so the store holds only its
   * data. Never a synchronous copy: a large artifact must not stall the process's event loop (the API
   * may share it). The source is opened without following a final symbolic link.
   */
  async putFile(path: string): Promise<PutResult> {
    const src = await fs.open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    let tmp: string | null = null;
    try {
      const st = await src.stat();
      if (!st.isFile()) throw new Error(`not a regular file: ${path}`);
      tmp = await this.tmpFile();
      const out = await fs.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
      let copied: { bytes: number; sha256?: string };
      try {
        copied = await copySparse(src, out, { length: st.size, hash: true });
      } finally {
        await out.close();
      }
      const key = copied.sha256!;
      const t = tmp;
      tmp = null;
      return { key, sha256: key, size: copied.bytes, created: await this.place(t, key) };
    } finally {
      if (tmp) await fs.rm(tmp, { force: true }).catch((e: Error) => process.emitWarning(`artifact store: cannot remove ${tmp}: ${e.message}`));
      await src.close().catch((e: Error) => process.emitWarning(`artifact store: closing ${path}: ${e.message}`));
    }
  }

  async putBytes(data: Buffer | string): Promise<PutResult> {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    const key = createHash('sha256').update(buf).digest('hex');
    if (await this.has(key)) return { key, sha256: key, size: buf.length, created: false };
    const tmp = await this.tmpFile();
    await fs.writeFile(tmp, buf, { flag: 'wx', mode: 0o644 });
    return { key, sha256: key, size: buf.length, created: await this.place(tmp, key) };
  }

  async has(key: string): Promise<boolean> {
    try {
      return (await fs.lstat(this.pathOf(key))).isFile();
    } catch {
      return false;
    }
  }

  async open(key: string): Promise<BlobReader> {
    const path = this.pathOf(key);
    let handle: FileHandle;
    try {
      handle = await fs.open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code !== 'ENOENT') throw unavailable(e);
      await this.check(); // the whole store missing (not mounted) is not one missing blob
      throw new BlobMissingError(
        "the artifact's content is not in the artifact store: it was deleted, or stored by a worker that does not share this server's ARTIFACT_DIR",
      );
    }
    let size: number;
    try {
      size = (await handle.stat()).size;
    } catch (err) {
      await handle.close().catch(() => undefined);
      throw unavailable(err as NodeJS.ErrnoException);
    }
    let used = false;
    return {
      size,
      stream(range) {
        if (used) throw new Error('a blob reader gives one stream');
        used = true;
        return handle.createReadStream(range ? { start: range.start, end: range.end } : {});
      },
      async read() {
        if (used) throw new Error('a blob reader gives one stream');
        used = true;
        try {
          return await handle.readFile();
        } finally {
          await handle.close();
        }
      },
      async close() {
        if (!used) await handle.close();
      },
    };
  }

  async remove(key: string): Promise<number | null> {
    const path = this.pathOf(key);
    let size: number;
    try {
      size = (await fs.lstat(path)).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    try {
      await fs.unlink(path);
      return size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null; // removed meanwhile by another process
      throw err;
    }
  }

  /** Names that are not keys (tmp/, a stray file) are skipped; nothing is followed through a link. */
  async *list(): AsyncIterable<{ key: string; size: number }[]> {
    let dirs: string[];
    try {
      dirs = (await fs.readdir(this.root)).filter((d) => /^[0-9a-f]{2}$/.test(d)).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw unavailable(err as NodeJS.ErrnoException);
    }
    let batch: { key: string; size: number }[] = [];
    for (const d of dirs) {
      const names = await fs.readdir(join(this.root, d)).catch(() => [] as string[]);
      for (const name of names) {
        if (!KEY.test(name) || !name.startsWith(d)) continue;
        const st = await fs.lstat(join(this.root, d, name)).catch(() => null);
        if (!st?.isFile()) continue;
        batch.push({ key: name, size: st.size });
        if (batch.length >= LIST_BATCH) {
          yield batch;
          batch = [];
        }
      }
    }
    if (batch.length) yield batch;
  }

  async check(): Promise<void> {
    try {
      await fs.access(this.root, constants.R_OK | constants.W_OK | constants.X_OK);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'ENOENT') {
        throw new StoreUnavailableError('the artifact store does not exist on this server (in scaled mode: is the shared ARTIFACT_DIR mounted?)');
      }
      throw unavailable(e);
    }
  }

  /** Makes the root (at start: a store that exists is usable at once, and the status can say so). */
  async init(): Promise<void> {
    await fs.mkdir(this.root, { recursive: true });
  }
}
