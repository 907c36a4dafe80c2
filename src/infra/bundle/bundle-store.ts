// The bundle store: uploaded tar archives, each unpacked once into a read-only tree, content-addressed
// by the sha256 of the bytes uploaded (what `sha256sum bundle.tar.gz` prints: the same file gives the
// same id; the same files packed again with other times or another compression give another).
//
//   BUNDLE_DIR/                      0700, this process's user
//     <hex>/manifest.json            { id, sizeBytes, files, entries, archiveBytes }
//     <hex>/tree/…                   the files; nothing writes here once it is in place
//     tmp/<random>/                  an upload being unpacked, or a bundle being removed
//
// An upload is hashed, counted, decompressed (gzip by zlib, zstd by the zstd program when it is
// installed) and unpacked (bundle-unpack.ts) in one pass into tmp/ (prepare); only a complete, valid
// bundle is renamed into place (install: atomically, a reader sees all of it or nothing). A refused
// one leaves nothing. A bundle is removed the same way round: renamed out of place into tmp/ (detach),
// then deleted (the caller installs and detaches under one lock, services/bundle.service.ts, so an
// upload of the same bytes never finds a tree that is about to go).

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsConstants, promises as fs } from 'node:fs';
import path from 'node:path';
import { pipeline, Readable } from 'node:stream';
import zlib from 'node:zlib';
import { BundleError } from '../tar/bundle-error';
import { unpackTar, type UnpackLimits } from './bundle-unpack';

export interface BundleLimits {
  /** Bytes of the upload (the archive as sent, compressed or not): MAX_BUNDLE_BYTES. */
  maxArchiveBytes: number;
  /** Bytes of its files unpacked: MAX_BUNDLE_UNPACKED_BYTES. */
  maxUnpackedBytes: number;
  /** Entries, directories included: MAX_BUNDLE_FILES. */
  maxEntries: number;
}

export const DEFAULT_BUNDLE_LIMITS: BundleLimits = {
  maxArchiveBytes: 256 * 1024 * 1024,
  maxUnpackedBytes: 512 * 1024 * 1024,
  maxEntries: 100_000,
};

export interface BundleManifest {
  /** "sha256:<hex>" */
  id: string;
  /** Bytes of its files unpacked. */
  sizeBytes: number;
  /** Entries that are not directories. */
  files: number;
  /** Every entry, directories included. */
  entries: number;
  /** Bytes uploaded. */
  archiveBytes: number;
}

/** An upload unpacked beside the store (BundleStore.prepare). */
export interface PreparedBundle {
  manifest: BundleManifest;
  /** Puts it in place (nothing when the same bundle is there already). */
  install(): Promise<void>;
  /** Removes what was not installed; call it whatever happened. */
  discard(): Promise<void>;
}

const ZSTD_PATHS = ['/usr/bin/zstd', '/bin/zstd', '/usr/local/bin/zstd'];

const size = (n: number) => (n >= 1024 * 1024 ? `${+(n / 1024 / 1024).toFixed(1)} MiB` : `${n} bytes`);

/** An upload in tmp/ older than this was cut off by a crash: removed by the next upload. */
const STALE_UPLOAD_MS = 6 * 3600 * 1000;

export class BundleStore {
  readonly root: string;
  private swept = false;

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  /** The unpacked files of a stored bundle (a directory), whether or not it is there. */
  treeOf(id: string): string {
    return path.join(this.root, hexOf(id), 'tree');
  }

  async manifest(id: string): Promise<BundleManifest | null> {
    try {
      return JSON.parse(await fs.readFile(path.join(this.root, hexOf(id), 'manifest.json'), 'utf8')) as BundleManifest;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  /** Stores an upload: prepare() and install() in one go. */
  async put(body: AsyncIterable<Buffer>, limits: BundleLimits, declaredBytes: number | null = null): Promise<BundleManifest> {
    const prepared = await this.prepare(body, limits, declaredBytes);
    try {
      await prepared.install();
    } finally {
      await prepared.discard();
    }
    return prepared.manifest;
  }

  /**
   * Unpacks an upload beside the store: resolves once it is complete and valid, to be install()ed (put
   * in place; it may be there already: same bytes, same id, stored once) and then discard()ed (what was
   * not installed is removed). Rejects with a BundleError for an archive refused, with nothing left
   * behind. `declaredBytes`: the request's Content-Length, refused at once when too large.
   */
  async prepare(body: AsyncIterable<Buffer>, limits: BundleLimits, declaredBytes: number | null = null): Promise<PreparedBundle> {
    if (declaredBytes !== null && declaredBytes > limits.maxArchiveBytes) {
      throw new BundleError(413, `the archive is ${size(declaredBytes)}, more than ${size(limits.maxArchiveBytes)} (MAX_BUNDLE_BYTES)`);
    }
    await fs.mkdir(this.root, { recursive: true, mode: 0o700 });
    const tmpRoot = path.join(this.root, 'tmp');
    await fs.mkdir(tmpRoot, { recursive: true, mode: 0o700 });
    if (!this.swept) {
      this.swept = true;
      await this.sweep(tmpRoot);
    }
    const work = path.join(tmpRoot, `${process.pid}.${randomBytes(8).toString('hex')}`);
    await fs.mkdir(work, { mode: 0o700 });
    try {
      const tree = path.join(work, 'tree');
      await fs.mkdir(tree, { mode: 0o700 });
      const hash = createHash('sha256');
      let archiveBytes = 0;
      const counted = async function* () {
        for await (const chunk of body) {
          archiveBytes += chunk.length;
          if (archiveBytes > limits.maxArchiveBytes) throw new BundleError(413, `the archive is more than ${size(limits.maxArchiveBytes)} (MAX_BUNDLE_BYTES)`);
          hash.update(chunk);
          yield chunk;
        }
      };
      const unpackLimits: UnpackLimits = {
        maxEntries: limits.maxEntries,
        maxBytes: limits.maxUnpackedBytes,
        names: { maxEntries: 'MAX_BUNDLE_FILES', maxBytes: 'MAX_BUNDLE_UNPACKED_BYTES' },
      };
      const result = await unpackTar(decompressed(counted()), tree, unpackLimits);
      const manifest: BundleManifest = { id: `sha256:${hash.digest('hex')}`, sizeBytes: result.bytes, files: result.files, entries: result.entries, archiveBytes };
      await fs.chmod(tree, 0o755);
      const file = await fs.open(path.join(work, 'manifest.json'), fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
      try {
        await file.writeFile(JSON.stringify(manifest));
      } finally {
        await file.close();
      }
      const dest = path.join(this.root, hexOf(manifest.id));
      let pending = true;
      return {
        manifest,
        install: async () => {
          if (!pending) return;
          try {
            await fs.rename(work, dest);
          } catch (err) {
            const code = (err as NodeJS.ErrnoException).code;
            if (code !== 'EEXIST' && code !== 'ENOTEMPTY') throw err;
            // stored already: the same bytes, the same files (discard() removes this copy)
          }
          pending = false;
        },
        discard: async () => {
          pending = false;
          await fs.rm(work, { recursive: true, force: true }).catch((e: Error) => process.emitWarning(`bundle store: cannot remove ${work}: ${e.message}`));
        },
      };
    } catch (err) {
      await fs.rm(work, { recursive: true, force: true }).catch((e: Error) => process.emitWarning(`bundle store: cannot remove ${work}: ${e.message}`));
      throw err;
    }
  }

  /**
   * Takes a bundle out of the store at once (a rename: it is no longer there for anyone) and returns
   * what deletes its files, or null when it was not there.
   */
  async detach(id: string): Promise<(() => Promise<void>) | null> {
    const tmpRoot = path.join(this.root, 'tmp');
    await fs.mkdir(tmpRoot, { recursive: true, mode: 0o700 });
    const gone = path.join(tmpRoot, `removed.${process.pid}.${randomBytes(8).toString('hex')}`);
    try {
      await fs.rename(path.join(this.root, hexOf(id)), gone);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    return () => fs.rm(gone, { recursive: true, force: true });
  }

  /** Removes what uploads cut off by a crash left in tmp/ (any process's: they may share the store). */
  private async sweep(tmpRoot: string): Promise<void> {
    for (const name of await fs.readdir(tmpRoot)) {
      const dir = path.join(tmpRoot, name);
      const st = await fs.lstat(dir).catch(() => null);
      if (!st || Date.now() - st.mtimeMs < STALE_UPLOAD_MS) continue;
      await fs.rm(dir, { recursive: true, force: true }).catch((e: Error) => process.emitWarning(`bundle store: cannot remove ${dir}: ${e.message}`));
    }
  }
}

/** The hex part of a bundle id (checked: it becomes a path). */
function hexOf(id: string): string {
  const m = /^sha256:([0-9a-f]{64})$/.exec(id);
  if (!m) throw new Error(`not a bundle id: ${id.slice(0, 80)}`);
  return m[1];
}

/** The tar stream inside an upload: gzip and zstd are recognised by their magic bytes. */
async function* decompressed(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const it = source[Symbol.asyncIterator]();
  const head: Buffer[] = [];
  let headBytes = 0;
  let done = false;
  while (headBytes < 4) {
    const r = await it.next();
    if (r.done) {
      done = true;
      break;
    }
    head.push(r.value);
    headBytes += r.value.length;
  }
  const first = Buffer.concat(head);
  const rest = async function* () {
    if (first.length) yield first;
    if (done) return;
    for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
  };
  if (first[0] === 0x1f && first[1] === 0x8b) {
    yield* through(rest(), zlib.createGunzip({ chunkSize: 64 * 1024 }));
  } else if (first[0] === 0x28 && first[1] === 0xb5 && first[2] === 0x2f && first[3] === 0xfd) {
    yield* zstd(rest());
  } else {
    yield* rest();
  }
}

/** `source` through a transform stream; a failure of either ends the iteration with it. */
async function* through(source: AsyncIterable<Buffer>, transform: NodeJS.ReadWriteStream): AsyncGenerator<Buffer> {
  const out = pipeline(Readable.from(source), transform, (err) => {
    if (err) (out as unknown as Readable).destroy(err);
  }) as unknown as Readable;
  try {
    for await (const chunk of out) yield chunk as Buffer;
  } catch (err) {
    if (err instanceof BundleError) throw err;
    throw new BundleError(400, `the gzip stream is corrupt: ${(err as Error).message}`);
  } finally {
    out.destroy();
  }
}

async function findZstd(): Promise<string | null> {
  for (const p of ZSTD_PATHS) {
    try {
      await fs.access(p, fsConstants.X_OK);
      return p;
    } catch {
      // not there: the next place
    }
  }
  return null;
}

/** zstd -d as a filter (Node 20 has no zstd); its memory bounded, killed when the reader stops. */
async function* zstd(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const bin = await findZstd();
  if (!bin) throw new BundleError(415, 'a zstd-compressed archive, but this server has no zstd program (Debian package zstd): send it plain or gzip-compressed');
  const child = spawn(bin, ['-d', '-c', '-q', '--memory=128MB'], { stdio: ['pipe', 'pipe', 'pipe'], env: {} });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => {
    if (stderr.length < 2000) stderr += c.toString('utf8');
  });
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  let feedError: unknown = null;
  const feed = (async () => {
    try {
      for await (const chunk of source) {
        if (!child.stdin.write(chunk)) await new Promise((r) => child.stdin.once('drain', r));
      }
      child.stdin.end();
    } catch (err) {
      feedError = err;
      child.kill('SIGKILL');
    }
  })();
  child.stdin.on('error', () => undefined); // EPIPE when zstd stops early: its exit status says why
  try {
    for await (const chunk of child.stdout) yield chunk as Buffer;
    await feed;
    if (feedError) throw feedError;
    const code = await exited;
    if (code !== 0) throw new BundleError(400, `the zstd stream is corrupt: ${stderr.trim().split('\n').pop()?.slice(0, 200) || `zstd exit ${code}`}`);
  } finally {
    child.kill('SIGKILL');
  }
}
