import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, renameSync, writeFileSync, copyFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** Artifacts and large outputs, content-addressed in a directory: the key is the sha256 of the bytes. */
export class ArtifactStore {
  constructor(private readonly root: string) {
    mkdirSync(root, { recursive: true });
  }

  pathOf(key: string): string {
    if (!/^[0-9a-f]{64}$/.test(key)) throw new Error(`not an artifact key: ${key}`);
    return join(this.root, key.slice(0, 2), key);
  }

  async putFile(path: string): Promise<{ key: string; sha256: string }> {
    const sha256 = await hashFile(path);
    this.place(sha256, (tmp) => copyFileSync(path, tmp));
    return { key: sha256, sha256 };
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

function hashFile(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(path)
      .on('data', (c) => h.update(c))
      .on('end', () => resolve(h.digest('hex')))
      .on('error', reject);
  });
}
