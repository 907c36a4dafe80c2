// DATA_DIR belongs to the orchestrator's user alone: the embedded database (PGlite writes its initial
// files 0666), Redis's append-only file, tests' env values, outputs and artifacts are in it.
//
// At start: the directory is created 0700 (or an existing one set to 0700 at once, so nothing below
// it is reachable by another user from then on); after the database and Redis have opened their
// files, every directory below is set to 0700 and every file to at most 0600 (group and other bits
// cleared). Links are never followed; only what this user owns is changed (root changes everything).
// The process runs with umask 077 (main.ts), so what is created later is private as well.

import { constants, promises as fs, mkdirSync, chmodSync, lstatSync, statSync, type Dirent } from 'node:fs';
import path from 'node:path';

export interface DataDirLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** Creates `dir` 0700 or makes an existing one 0700 (following a link only for DATA_DIR itself). */
export function prepareDataDir(dir: string, logger: DataDirLogger): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = statSync(dir);
  if (!st.isDirectory()) throw new Error(`DATA_DIR ${dir} is not a directory`);
  if ((st.mode & 0o077) !== 0) {
    chmodSync(dir, 0o700);
    logger.warn({ dataDir: dir, was: (st.mode & 0o7777).toString(8) }, 'DATA_DIR was open to other users: now mode 0700');
  }
}

/**
 * Clears group and other permission bits below `dir`: directories 0700, files keep only their
 * owner's bits (0600, or 0700 for an executable). Returns how many entries it changed. Never follows a link.
 * `keepInside`: directories made private themselves, but not walked (the bundle store: its trees keep
 * the modes their archives gave, and they are many files).
 */
export async function repairDataDirModes(dir: string, logger: DataDirLogger, keepInside: string[] = []): Promise<{ changed: number; checked: number }> {
  const kept = new Set(keepInside.map((d) => path.resolve(d)));
  const uid = process.getuid?.();
  let changed = 0;
  let checked = 0;
  const walk = async (current: string): Promise<void> => {
    let entries: Dirent[];
    try {
      entries = await fs.readdir(current, { withFileTypes: true });
    } catch (err) {
      logger.warn({ dir: current, err: (err as Error).message }, 'DATA_DIR repair: cannot list a directory');
      return;
    }
    for (const entry of entries) {
      const full = path.join(current, entry.name);
      checked++;
      try {
        const st = await fs.lstat(full);
        if (st.isSymbolicLink()) continue; // never follow; a link's own mode means nothing
        if (uid !== 0 && st.uid !== uid) continue;
        const mode = st.mode & 0o7777;
        const wanted = st.isDirectory() ? 0o700 : mode & 0o700; // a file keeps its owner's bits
        if (mode !== wanted) {
          // lchmod does not exist on Linux: open the entry without following a link, then fchmod.
          await chmodNoFollow(full, wanted, st.isDirectory());
          changed++;
        }
        if (st.isDirectory() && !kept.has(path.resolve(full))) await walk(full);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // removed meanwhile
        logger.warn({ path: full, err: (err as Error).message }, 'DATA_DIR repair: cannot fix the mode of an entry');
      }
    }
  };
  const started = Date.now();
  await walk(dir);
  if (changed) logger.warn({ dataDir: dir, changed, checked, ms: Date.now() - started }, 'DATA_DIR: files and directories open to other users made private');
  return { changed, checked };
}

async function chmodNoFollow(file: string, mode: number, isDir: boolean): Promise<void> {
  // O_PATH cannot fchmod; O_RDONLY|O_NOFOLLOW|O_NONBLOCK opens files and dirs without following a
  // final link or blocking on a FIFO (sockets cannot be opened: chmod by path, checked as not a link).
  if (!isDir && lstatSync(file).isSocket()) {
    await fs.chmod(file, mode);
    return;
  }
  const handle = await fs.open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | (isDir ? constants.O_DIRECTORY : 0));
  try {
    await handle.chmod(mode);
  } finally {
    await handle.close();
  }
}
