import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';

/** Is a process with this pid alive (on this host)? */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * An exclusive lock on a directory, held by this process: a file created with O_EXCL that holds our pid.
 * A lock left by a dead process (crash, SIGKILL) is taken over; a live holder is a clear error.
 */
export function acquireLockFile(path: string, what: string): { release(): void } {
  for (let tries = 0; tries < 3; tries++) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      let released = false;
      return {
        release() {
          if (released) return;
          released = true;
          try {
            if (readFileSync(path, 'utf8').trim() === String(process.pid)) unlinkSync(path);
          } catch {
            /* already gone */
          }
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let holder = NaN;
      try {
        holder = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
      } catch {
        /* removed meanwhile: try again */
      }
      if (Number.isInteger(holder) && holder !== process.pid && isAlive(holder)) {
        throw new Error(
          `${what} is in use by another process (pid ${holder}, lock ${path}). Only one process may open the embedded ` +
            `database: stop the other one, use another DATA_DIR, or set DATABASE_URL to a PostgreSQL server for several processes.`,
        );
      }
      try {
        unlinkSync(path); // stale: its process is gone
      } catch {
        /* someone else took it over first */
      }
    }
  }
  throw new Error(`could not take the lock ${path}`);
}
