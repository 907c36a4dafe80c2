import { constants as fsConstants, promises as fs } from 'node:fs';

/** Does anything exist at `p` (a broken link does not)? */
export async function pathExists(p: string): Promise<boolean> {
  try {
    await fs.access(p, fsConstants.F_OK);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return false; // the expected answer: nothing there
    throw err; // anything else (EACCES, EIO) is not an answer to "does it exist"
  }
}
