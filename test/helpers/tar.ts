// A small tar reader for tests: ustar entries with pax extended headers (path, size), as GNU tar reads them.

export interface TarEntry {
  path: string;
  type: string;
  size: number;
  data: Buffer;
}

function field(h: Buffer, start: number, len: number): string {
  const raw = h.subarray(start, start + len);
  const end = raw.indexOf(0);
  return raw.subarray(0, end === -1 ? len : end).toString('utf8');
}

function checksumOk(h: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i];
  return parseInt(field(h, 148, 8).trim(), 8) === sum;
}

/** Every regular-file entry of the archive; throws on a bad checksum or a missing end. */
export function parseTar(buf: Buffer): TarEntry[] {
  const out: TarEntry[] = [];
  let pax: Record<string, string> = {};
  let off = 0;
  for (;;) {
    if (off + 512 > buf.length) throw new Error(`tar ends without its end blocks at ${off}`);
    const h = buf.subarray(off, off + 512);
    if (h.every((b) => b === 0)) {
      if (!buf.subarray(off + 512, off + 1024).every((b) => b === 0) || off + 1024 > buf.length) throw new Error('one end block, not two');
      return out;
    }
    if (!checksumOk(h)) throw new Error(`bad header checksum at ${off}`);
    if (field(h, 257, 6) !== 'ustar') throw new Error(`not a ustar header at ${off}`);
    const type = String.fromCharCode(h[156]);
    let size = parseInt(field(h, 124, 12).trim() || '0', 8);
    if (type === '0' && pax.size) size = Number(pax.size);
    const data = buf.subarray(off + 512, off + 512 + size);
    off += 512 + Math.ceil(size / 512) * 512;
    if (type === 'x') {
      pax = {};
      let s = data.toString('utf8');
      while (s.length) {
        const sp = s.indexOf(' ');
        const len = Number(s.slice(0, sp));
        const rec = Buffer.from(s).subarray(0, len).toString('utf8');
        const kv = rec.slice(sp + 1, -1);
        const eq = kv.indexOf('=');
        pax[kv.slice(0, eq)] = kv.slice(eq + 1);
        s = Buffer.from(s).subarray(len).toString('utf8');
      }
      continue;
    }
    out.push({ path: pax.path ?? field(h, 0, 100), type, size, data: Buffer.from(data) });
    pax = {};
  }
}
