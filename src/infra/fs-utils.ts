import { constants as fsConstants, promises as fs } from 'node:fs';

/** Does anything exist at `p` (a broken link does not)? */
export async function pathExists(p: string): Promise<boolean> {
  try {
    await fs.access(p, fsConstants.F_OK);
    return true;
  } catch {
    return false;
  }
}
