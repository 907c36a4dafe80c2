// What a run's /work holds when its script starts: its bundle, then its files (RunSpec.inputs), as a
// private copy owned by the sandbox user that the reset throws away.
//
// With a disk (the driver runs as root: work-fs.ts), a bundle is the lower layer of an overlayfs
// mounted over the environment's work dir: the lower is this driver's sandbox-owned copy of the
// bundle (bundle-lowers.ts, made once), the upper and overlay work dirs are on the environment's ext4
// under `.inputs/` (hidden under the mount). What a test changes is copied up into the upper layer, so
// the lower, shared by every run of the bundle, never changes, and the files are not touched at all
// until a test writes one. Measured (README, bench section `bundle`): a mount and an umount are
// system calls of well under a millisecond (made by mount-helper.ts; as `mount`/`umount` processes
// 3 ms each), against ~50 ms for `cp -a` of 10 MB in 1,000 files. `volatile`: no sync of the upper
// layer, which is thrown away anyway (without it a copy-up fsyncs: 4 ms for a 10 KB file). The bundle
// counts against the disk: a file of its size is reserved (fallocate: no data written, the sparse
// disk file does not grow) beside the upper layer.
//
// A run's files are written into the upper layer before the mount (a later layer wins: a file over a
// bundle's file or directory hides it, a directory merges with the bundle's), or into the work dir
// itself when there is no bundle. Without a disk (not root: no mounts) the bundle is copied.
//
// Everything written here is written as root into directories this code made since the reset, which
// nothing of the sandbox user's has touched (its processes are dead between runs): no link can be in
// the way, and files are created O_EXCL|O_NOFOLLOW all the same.

import { constants as fsConstants, promises as fs } from 'node:fs';
import path from 'node:path';
import { relativePathProblem } from '../../domain/work-files';
import { InfrastructureError, type RunFile, type RunInputs } from '../driver';
import { copyTree, type BundleLower, type BundleLowers } from './bundle-lowers';
import type { EnvState } from './env-state';
import type { SandboxUser } from './sandbox-user';
import type { MountHelper } from './mount-helper';

/** On the environment's disk, under the overlay: upper and work dirs of the overlay, the reservation. */
export const INPUTS_DIR = '.inputs';

/** What a mounted overlay holds until the reset. */
export interface MountedInputs {
  lower: BundleLower;
}

export interface InputsHost {
  bundleLowers: BundleLowers;
  owner: SandboxUser | null;
  mounts: MountHelper;
}

/**
 * Fills the (empty, sandbox-owned) work dir of `state` with `inputs`. With a bundle and a disk, mounts
 * the overlay (state.inputs says so until unmountInputs). Throws an InfrastructureError.
 */
export async function populateWork(host: InputsHost, state: EnvState, inputs: RunInputs | undefined): Promise<void> {
  if (!inputs || (!inputs.bundleDir && inputs.files.length === 0)) return;
  for (const f of inputs.files) {
    const problem = relativePathProblem(f.path);
    if (problem) throw new InfrastructureError(`a run file's path ${JSON.stringify(f.path.slice(0, 100))} ${problem}`);
  }
  try {
    if (!inputs.bundleDir) {
      await writeFiles(state.workDir, null, inputs.files, host.owner);
      return;
    }
    if (!state.disk) {
      // no mounts without root: a plain copy (this driver's own user owns everything)
      const st = await fs.lstat(inputs.bundleDir).catch(() => null);
      if (!st?.isDirectory()) throw new InfrastructureError(`the bundle ${inputs.bundleDir} is not on this host (a worker on another host than the API needs BUNDLE_DIR on a shared filesystem)`);
      const copy = path.join(path.dirname(state.workDir), 'bundle-copy');
      await fs.rm(copy, { recursive: true, force: true });
      await copyTree(inputs.bundleDir, copy, host.owner);
      for (const name of await fs.readdir(copy)) await fs.rename(path.join(copy, name), path.join(state.workDir, name));
      await fs.rm(copy, { recursive: true, force: true });
      await writeFiles(state.workDir, inputs.bundleDir, inputs.files, host.owner, true);
      return;
    }
    const lower = await host.bundleLowers.acquire(inputs.bundleDir);
    try {
      await mountOverlay(host, state, lower, inputs.files);
    } catch (err) {
      lower.release();
      throw err;
    }
    state.inputs = { lower };
  } catch (err) {
    if (err instanceof InfrastructureError) throw err;
    throw new InfrastructureError(`cannot fill the work dir of ${state.handle.id}: ${(err as Error).message}`, { cause: err });
  }
}

async function mountOverlay(host: InputsHost, state: EnvState, lower: BundleLower, files: RunFile[]): Promise<void> {
  const base = path.join(state.workDir, INPUTS_DIR); // on the ext4 root, hidden under the overlay once mounted
  const upper = path.join(base, 'upper');
  const work = path.join(base, 'work');
  await fs.mkdir(base, { mode: 0o700 });
  await fs.mkdir(upper, { mode: 0o700 });
  await fs.mkdir(work, { mode: 0o700 });
  // the merged root takes the upper root's owner and mode: the test's own, private
  if (host.owner) await fs.lchown(upper, host.owner.uid, host.owner.gid);
  await fs.chmod(upper, 0o700);
  await writeFiles(upper, lower.dir, files, host.owner);
  const options = `lowerdir=${lower.dir},upperdir=${upper},workdir=${work},volatile`;
  if (/[,:\\]/.test(lower.dir + upper + work)) throw new InfrastructureError(`overlay paths must not hold ",", ":" or "\\": ${base}`);
  try {
    await host.mounts.reserve(path.join(base, 'reserve'), lower.diskBytes);
  } catch (err) {
    const why = (err as Error).message;
    throw new InfrastructureError(/No space/i.test(why) ? `the bundle (${lower.diskBytes} bytes on disk) does not fit the disk of ${state.handle.id}` : `cannot reserve the bundle's space: ${why}`);
  }
  try {
    await host.mounts.mountOverlay(state.workDir, options);
  } catch (err) {
    throw new InfrastructureError(`cannot mount the bundle's overlay on ${state.workDir}: ${(err as Error).message}`, { cause: err });
  }
}

/** Unmounts the overlay of the last run, if any (before the reset empties the disk). */
export async function unmountInputs(host: InputsHost, state: EnvState): Promise<void> {
  const mounted = state.inputs;
  if (!mounted) return;
  await host.mounts.unmount(state.workDir);
  state.inputs = null;
  mounted.lower.release();
  // gone before the reset counts what the test freed: reserved blocks were never written, nothing to trim
  await fs.rm(path.join(state.workDir, INPUTS_DIR, 'reserve'), { force: true });
}

/**
 * Writes `files` below `root`, making their directories (with the mode the bundle's directory of that
 * name has in `lower`, else 0755), all owned by `owner`. Each path once (the worker merged the layers).
 * `replace`: `root` holds a copy of the bundle, whose entries at those paths go first.
 */
export async function writeFiles(root: string, lower: string | null, files: RunFile[], owner: SandboxUser | null, replace = false): Promise<void> {
  const made = new Set<string>();
  for (const f of files) {
    const parts = f.path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const rel = parts.slice(0, i).join('/');
      if (made.has(rel)) continue;
      const dir = path.join(root, rel);
      let st = await fs.lstat(dir).catch(() => null);
      if (st && !st.isDirectory() && replace) {
        await fs.rm(dir, { force: true }); // a file of the copied bundle where this one needs a directory
        st = null;
      }
      if (st && !st.isDirectory()) throw new InfrastructureError(`cannot write the file ${f.path}: ${rel} is not a directory`);
      if (!st) {
        const like = lower ? await fs.lstat(path.join(lower, rel)).catch(() => null) : null;
        await fs.mkdir(dir, { mode: 0o700 });
        if (owner) await fs.lchown(dir, owner.uid, owner.gid);
        await fs.chmod(dir, like?.isDirectory() ? like.mode & 0o777 : 0o755);
      }
      made.add(rel);
    }
    const mode = f.executable ? 0o755 : 0o644;
    if (replace) await fs.rm(path.join(root, f.path), { recursive: true, force: true }); // the bundle's, in a copy
    const h = await fs.open(path.join(root, f.path), fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, 0o600);
    try {
      await h.writeFile(Buffer.from(f.base64, 'base64'));
      if (owner) await h.chown(owner.uid, owner.gid);
      await h.chmod(mode);
    } finally {
      await h.close();
    }
  }
}
