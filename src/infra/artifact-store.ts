import { createHash, randomBytes } from 'node:crypto';
import { constants, existsSync, mkdirSync, promises as fs, renameSync, writeFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { copySparse } from './sparse-copy';

/** Artifacts and large outputs, content-addressed in a directory: the key is the sha256 of the bytes. */
export class ArtifactStore {
  constructor(private readonly root: string) {
    mkdirSync(root, { recursive: true });
  }

  pathOf(key: string): string {
    if (!/^[0-9a-f]{64}$/.test(key)) throw new Error(`not an artifact key: ${key}`);
    return join(this.root, key.slice(0, 2), key);
  }

  /**
   * Stores a file: one pass hashes it and writes a temporary copy, which becomes the content's key
   * (or is dropped when that content is stored already). The copy is sparse (infra/sparse-copy.ts):
   * a core dump keeps its holes, the rename keeps them too, so the store holds only its data.
   * Never a synchronous copy: a large artifact must not stall the process's event loop (the API
   * may share it). The source is opened without following a final symbolic link.
   */
  async putFile(path: string): Promise<{ key: string; sha256: string }> {
    const src = await fs.open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    const tmpDir = join(this.root, 'tmp');
    const tmp = join(tmpDir, `${process.pid}.${randomBytes(8).toString('hex')}.tmp`);
    try {
      const st = await src.stat();
      if (!st.isFile()) throw new Error(`not a regular file: ${path}`);
      await fs.mkdir(tmpDir, { recursive: true });
      const out = await fs.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
      let sha256: string;
      try {
        sha256 = (await copySparse(src, out, { length: st.size, hash: true })).sha256!;
      } finally {
        await out.close();
      }
      const dest = this.pathOf(sha256);
      if (existsSync(dest)) await fs.rm(tmp, { force: true });
      else {
        await fs.mkdir(dirname(dest), { recursive: true });
        await fs.rename(tmp, dest);
      }
      return { key: sha256, sha256 };
    } catch (err) {
      await fs.rm(tmp, { force: true }).catch((e: Error) => process.emitWarning(`artifact store: cannot remove ${tmp}: ${e.message}`));
      throw err;
    } finally {
      await src.close().catch((e: Error) => process.emitWarning(`artifact store: closing ${path}: ${e.message}`));
    }
  }

  putBytes(data: Buffer | string): { key: string; sha256: string; size: number } {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    const sha256 = createHash('sha256').update(buf).digest('hex');
    this.place(sha256, (tmp) => writeFileSync(tmp, buf));
    return { key: sha256, sha256, size: buf.length };
  }

  /** Writes the content once (same key, same bytes), atomically: a reader never sees half a file. */
  private place(key: string, write: (tmp: string) => void): void {
    const dest = this.pathOf(key);
    if (existsSync(dest)) return;
    mkdirSync(dirname(dest), { recursive: true });
    const tmp = `${dest}.${process.pid}.tmp`;
    write(tmp);
    renameSync(tmp, dest);
  }

  remove(key: string): void {
    rmSync(this.pathOf(key), { force: true });
  }
}
