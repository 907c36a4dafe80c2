// File descriptors a child process would inherit from this one: open, above stderr, and without
// O_CLOEXEC. Node opens everything it owns with O_CLOEXEC, so these are what this process itself
// inherited (e.g. a descriptor its parent leaked to it) or what a native module opened carelessly.

import { closeSync, readFileSync, readdirSync } from 'node:fs';

const O_CLOEXEC = 0o2000000;

/** The descriptors above 2 that an exec'd child would inherit (Linux: read from /proc/self/fdinfo). */
export function inheritableFds(): number[] {
  let names: string[];
  try {
    names = readdirSync('/proc/self/fd');
  } catch {
    return []; // no /proc: nothing can be listed (the caller closes what it knows of)
  }
  const fds: number[] = [];
  for (const name of names) {
    const fd = Number(name);
    if (!Number.isInteger(fd) || fd <= 2) continue;
    let info: string;
    try {
      info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    } catch {
      continue; // closed meanwhile (the directory handle of readdirSync itself)
    }
    const flags = /^flags:\s+([0-7]+)$/m.exec(info);
    if (flags && (parseInt(flags[1], 8) & O_CLOEXEC) === 0) fds.push(fd);
  }
  return fds.sort((a, b) => a - b);
}

/** Closes every inheritable descriptor except `keep`; returns the ones closed. */
export function closeInheritedFds(keep: readonly number[] = []): number[] {
  const closed: number[] = [];
  for (const fd of inheritableFds()) {
    if (keep.includes(fd)) continue;
    closeSync(fd);
    closed.push(fd);
  }
  return closed;
}
