// The Debian mirror debootstrap uses: DEBIAN_MIRROR when given, else the first archive (not the
// security one) of the host's apt sources, deb822 (*.sources) first, then the one-line format.

import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

export const FALLBACK_MIRROR = 'http://deb.debian.org/debian';

function readIfThere(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return ''; // the expected answer: no such file
    throw err;
  }
}

function listIfThere(dir: string, ext: string): string[] {
  try {
    return readdirSync(dir).filter((f) => f.endsWith(ext)).sort().map((f) => path.join(dir, f));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []; // the expected answer: no such dir
    throw err;
  }
}

const usable = (uri: string) => /^https?:\/\//.test(uri) && !/-security\b/.test(uri) && !uri.includes('\0');

/** The mirror of the host's apt sources under `aptDir` (default /etc/apt), or FALLBACK_MIRROR. */
export function hostDebianMirror(aptDir = '/etc/apt'): string {
  for (const file of listIfThere(path.join(aptDir, 'sources.list.d'), '.sources')) {
    // a stanza is disabled by "Enabled: no"
    for (const stanza of readIfThere(file).split(/\n\s*\n/)) {
      if (/^enabled:\s*no\s*$/im.test(stanza)) continue;
      if (!/^types:.*\bdeb\b/im.test(stanza)) continue;
      const m = /^uris:\s*(.+)$/im.exec(stanza);
      const uri = m?.[1].split(/\s+/).find(usable);
      if (uri) return uri.replace(/\/+$/, '');
    }
  }
  const oneLine = [path.join(aptDir, 'sources.list'), ...listIfThere(path.join(aptDir, 'sources.list.d'), '.list')];
  for (const file of oneLine) {
    for (const raw of readIfThere(file).split('\n')) {
      const line = raw.replace(/#.*/, '').replace(/\[[^\]]*\]/, '').trim().split(/\s+/);
      if (line[0] === 'deb' && line[1] && usable(line[1])) return line[1].replace(/\/+$/, '');
    }
  }
  return FALLBACK_MIRROR;
}
