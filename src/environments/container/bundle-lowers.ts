// The bundles this driver's runs start from, each copied once per driver instance into its state dir
// and owned by the sandbox user: the read-only lower layer of the overlay a run's /work is
// (work-inputs.ts). A copy, not the bundle store's tree itself: a test must own its files (to write
// them in place, chmod them, pass git's ownership check), and the store's tree belongs to the API's
// user; the store on another host may give other owners still. Made once (see copyTree).
//
//   <stateRoot>/bundles/            root 0700: the sandbox user cannot reach a lower layer itself
//     <key>/                        a copy (key: sha256 of the bundle dir's path: bundles are immutable)
//
// Copies stay while in use; beyond MAX_KEPT the least recently used idle ones are removed.

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { InfrastructureError } from '../driver';
import type { DriverLogger } from './image';
import type { SandboxUser } from './sandbox-user';

/** Idle copies kept for the next runs. */
const MAX_KEPT = 8;

export interface BundleLower {
  /** The copy: the overlay's lower directory. */
  dir: string;
  /** Bytes the copy takes on disk (its blocks, as `du` counts them): what the run's disk reserves. */
  diskBytes: number;
  release(): void;
}

interface Entry {
  ready: Promise<{ dir: string; diskBytes: number }>;
  users: number;
  lastUsed: number;
}

export class BundleLowers {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly root: string,
    private readonly owner: SandboxUser | null,
    private readonly log: DriverLogger,
  ) {}

  /** The copy of `bundleDir` (made now if this driver has none), held until release(). */
  async acquire(bundleDir: string): Promise<BundleLower> {
    if (!path.isAbsolute(bundleDir)) throw new InfrastructureError(`the bundle dir ${bundleDir} is not an absolute path`);
    const key = createHash('sha256').update(path.resolve(bundleDir)).digest('hex').slice(0, 32);
    let entry = this.entries.get(key);
    if (!entry) {
      const made: Entry = { ready: this.copy(bundleDir, key), users: 0, lastUsed: Date.now() };
      entry = made;
      this.entries.set(key, made);
      made.ready.catch(() => {
        if (this.entries.get(key) === made) this.entries.delete(key); // the run sees the error; the next one tries again
      });
    }
    entry.users++;
    entry.lastUsed = Date.now();
    const held = entry;
    let copy: { dir: string; diskBytes: number };
    try {
      copy = await held.ready;
    } catch (err) {
      held.users--;
      throw err;
    }
    let released = false;
    return {
      ...copy,
      release: () => {
        if (released) return;
        released = true;
        held.users--;
        held.lastUsed = Date.now();
        void this.evict();
      },
    };
  }

  /** Forgets every copy (the caller removes the state dir they are in). */
  clear(): void {
    this.entries.clear();
  }

  private async evict(): Promise<void> {
    const idle = [...this.entries.entries()].filter(([, e]) => e.users === 0).sort((a, b) => a[1].lastUsed - b[1].lastUsed);
    for (const [key, e] of idle.slice(0, Math.max(0, this.entries.size - MAX_KEPT))) {
      this.entries.delete(key);
      const copy = await e.ready.catch(() => null);
      if (copy) await fs.rm(copy.dir, { recursive: true, force: true }).catch((err: Error) => this.log.warn({ dir: copy.dir, err: err.message }, 'cannot remove an unused bundle copy'));
    }
  }

  private async copy(bundleDir: string, key: string): Promise<{ dir: string; diskBytes: number }> {
    const st = await fs.lstat(bundleDir).catch(() => null);
    if (!st?.isDirectory()) {
      throw new InfrastructureError(`the bundle ${bundleDir} is not on this host (a worker on another host than the API needs BUNDLE_DIR on a shared filesystem)`);
    }
    await fs.mkdir(this.root, { recursive: true, mode: 0o700 });
    await fs.chmod(this.root, 0o700);
    const dest = path.join(this.root, key);
    const tmp = `${dest}.${randomBytes(6).toString('hex')}.tmp`;
    const started = Date.now();
    try {
      const diskBytes = await copyTree(bundleDir, tmp, this.owner);
      await fs.rm(dest, { recursive: true, force: true }); // a copy a failed run left half-made
      await fs.rename(tmp, dest);
      this.log.info({ bundleDir, diskBytes, ms: Date.now() - started }, 'bundle copied for the sandbox user');
      return { dir: dest, diskBytes };
    } catch (err) {
      await fs.rm(tmp, { recursive: true, force: true }).catch((e: Error) => this.log.warn({ dir: tmp, err: e.message }, 'cannot remove a half-made bundle copy'));
      if (err instanceof InfrastructureError) throw err;
      throw new InfrastructureError(`cannot copy the bundle ${bundleDir}: ${(err as Error).message}`, { cause: err });
    }
  }
}

/**
 * Copies a tree (files, directories, symbolic links: nothing else is in a bundle) with `cp -a` (links
 * copied as links, never followed; modes and times kept), gives it to `owner` (`chown -hR`: links
 * themselves, never their targets) and returns the bytes it takes on disk (`du`). Three processes, once
 * per bundle: 10 MB in 1,000 files in ~60 ms, against ~300 ms for the same walk in Node.
 */
export async function copyTree(src: string, dest: string, owner: SandboxUser | null): Promise<number> {
  await run('cp', ['-a', '--no-target-directory', '--', src, dest]);
  if (owner) await run('chown', ['-hR', `${owner.uid}:${owner.gid}`, '--', dest]);
  const du = await run('du', ['-s', '-B1', '-x', '--', dest]);
  const bytes = Number(du.split('\t')[0]);
  if (!Number.isFinite(bytes)) throw new Error(`du ${dest}: no size in ${JSON.stringify(du.slice(0, 100))}`);
  return bytes;
}

const COREUTILS = ['/usr/bin', '/bin'];

/** A coreutils program with no shell and an empty environment; its stdout, or an error with its stderr. */
function run(name: string, args: string[]): Promise<string> {
  const bin = COREUTILS.map((d) => path.join(d, name)).find((p) => existsSync(p)) ?? name;
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: {}, cwd: '/' });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => {
      if (err.length < 2000) err += c.toString('utf8');
    });
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (code === 0) resolve(out);
      else reject(new Error(`${name} ${args.join(' ')}: ${signal ?? `exit ${code}`}${err.trim() ? `: ${err.trim().split('\n').slice(-2).join(' / ')}` : ''}`));
    });
  });
}
