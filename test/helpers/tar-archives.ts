// Tar archives for tests, made entry by entry (src/infra/tar/tar-writer.ts), hostile ones included.
import { gzipSync } from 'node:zlib';
import { TAR_END, tarHeader, tarPadding, type TarHeaderInput } from '../../src/infra/tar/tar-writer';

export interface TestEntry extends Omit<TarHeaderInput, 'size'> {
  /** A regular file's content. */
  content?: string | Buffer;
  /** A size in the header without data (the data is whatever follows: for bombs and truncations). */
  declaredSize?: number;
}

/** A whole archive of these entries (with the end-of-archive blocks unless `end: false`). */
export function tarOf(entries: TestEntry[], o: { end?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = e.content === undefined ? Buffer.alloc(0) : Buffer.from(e.content);
    parts.push(tarHeader({ ...e, size: e.declaredSize ?? data.length }));
    if (data.length) parts.push(data, tarPadding(data.length));
  }
  if (o.end !== false) parts.push(TAR_END);
  return Buffer.concat(parts);
}

export const file = (name: string, content: string | Buffer = 'x', mode = 0o644): TestEntry => ({ name, type: 'file', content, mode });
export const dir = (name: string, mode = 0o755): TestEntry => ({ name, type: 'directory', mode });
export const symlink = (name: string, linkName: string): TestEntry => ({ name, type: 'symlink', linkName, mode: 0o777 });
export const hardlink = (name: string, linkName: string): TestEntry => ({ name, type: 'hardlink', linkName });

/**
 * A gzip bomb: a tar whose one file declares `bytes` of zeros, and the zeros, as concatenated gzip
 * members of 1 MiB each (a valid gzip stream): about 1 KB per MiB of zeros, so 1 GB in about 1 MB.
 */
export function gzipBomb(bytes: number, name = 'zeros.bin'): Buffer {
  const member = gzipSync(Buffer.alloc(1024 * 1024), { level: 9 });
  const parts = [gzipSync(tarHeader({ name, type: 'file', size: bytes }))];
  for (let left = bytes; left > 0; left -= 1024 * 1024) parts.push(left >= 1024 * 1024 ? member : gzipSync(Buffer.alloc(left)));
  parts.push(gzipSync(Buffer.concat([tarPadding(bytes), TAR_END])));
  return Buffer.concat(parts);
}

export interface HostileArchive {
  name: string;
  body: Buffer;
  status: 400 | 413 | 415;
  /** The one line answered. */
  error: RegExp;
}

/** Enough ".." to climb from anywhere to "/", then `abs` (an absolute path): a relative way out. */
const climb = (abs: string) => `${'../'.repeat(24)}${abs.replace(/^\//, '')}`;

/**
 * Every kind of archive a bundle upload must refuse, each aimed at `canary` (an absolute directory
 * outside the store that must stay empty). Limits assumed: MAX_BUNDLE_FILES 50, MAX_BUNDLE_UNPACKED_BYTES
 * 1 MiB (the bombs are far beyond any limit).
 */
export function hostileArchives(canary: string): HostileArchive[] {
  const big = 'x'.repeat(300);
  return [
    { name: 'an absolute path', body: tarOf([file('ok.txt'), file(`${canary}/absolute.txt`)]), status: 400, error: /^entry "\/.*absolute\.txt": an absolute path/ },
    { name: 'a ".." path', body: tarOf([file(climb(`${canary}/dotdot.txt`))]), status: 400, error: /^entry "\.\.\/.*dotdot\.txt": the path must not contain "\.\."$/ },
    { name: 'a ".." inside a path', body: tarOf([dir('a/'), file('a/../../escape.txt')]), status: 400, error: /^entry "a\/\.\.\/\.\.\/escape\.txt": the path must not contain "\.\."$/ },
    { name: 'a symlink to an absolute path', body: tarOf([symlink('evil', canary), file('evil/through-link.txt')]), status: 400, error: /^entry "evil": a symbolic link to the absolute path ".*" \(links must stay in the bundle\)$/ },
    { name: 'a symlink leaving the bundle', body: tarOf([symlink('up', '../..')]), status: 400, error: /^entry "up": a symbolic link to "\.\.\/\.\." that leaves the bundle$/ },
    {
      // each link stays inside on its own; followed through the first, the second climbs out
      name: 'a chain of symlinks leaving the bundle',
      body: tarOf([dir('a/'), dir('a/b/'), dir('c/'), symlink('a/b/x', '../../c'), symlink('a/b/l', 'x/../../..')]),
      status: 400,
      error: /^entry "a\/b\/l": a symbolic link to "x\/\.\.\/\.\.\/\.\." that leaves the bundle$/,
    },
    { name: 'an entry below a symlink', body: tarOf([dir('sub/'), symlink('link', 'sub'), file('link/through.txt')]), status: 400, error: /^entry "link\/through\.txt": is below "link", which is a symbolic link, not a directory$/ },
    { name: 'a hard link to a host file', body: tarOf([hardlink('passwd', '/etc/passwd')]), status: 400, error: /^entry "passwd": a hard link to "\/etc\/passwd", outside the bundle/ },
    { name: 'a hard link climbing out', body: tarOf([hardlink('h', climb(`${canary}/x`))]), status: 400, error: /^entry "h": a hard link to "\.\.\/.*", outside the bundle/ },
    { name: 'a hard link to nothing in the archive', body: tarOf([hardlink('h', 'missing.txt'), file('missing.txt')]), status: 400, error: /^entry "h": a hard link to "missing\.txt", which is not a regular file earlier in the archive$/ },
    { name: 'a character device', body: tarOf([{ name: 'null', type: 'character-device', mode: 0o666 }]), status: 400, error: /^entry "null": a character device is not allowed in a bundle$/ },
    { name: 'a block device', body: tarOf([{ name: 'sda', type: 'block-device', mode: 0o660 }]), status: 400, error: /^entry "sda": a block device is not allowed in a bundle$/ },
    { name: 'a FIFO', body: tarOf([{ name: 'pipe', type: 'fifo', mode: 0o644 }]), status: 400, error: /^entry "pipe": a FIFO \(named pipe\) is not allowed in a bundle$/ },
    { name: 'a setuid file', body: tarOf([file('suid', '#!/bin/sh\nid\n', 0o4755)]), status: 400, error: /^entry "suid": a setuid bit \(mode 4755\) is not allowed in a bundle$/ },
    { name: 'a setgid directory', body: tarOf([dir('shared/', 0o2775)]), status: 400, error: /^entry "shared": a setgid bit \(mode 2775\) is not allowed in a bundle$/ },
    { name: 'a name part over 255 bytes', body: tarOf([file(`dir/${big}`)]), status: 400, error: /^entry "dir\/x+…?": the path has a part longer than 255 bytes$/ },
    { name: 'a path over 4096 bytes', body: tarOf([file(`${'d/'.repeat(2100)}f`)]), status: 400, error: /^entry "(d\/)+…": the path is longer than 4096 bytes$/ },
    { name: 'a control character in a name', body: tarOf([file('new\nline.txt')]), status: 400, error: /^entry "new\?line\.txt": the path must not contain control characters/ },
    { name: 'an entry given twice', body: tarOf([file('twice.txt', 'a'), file('twice.txt', 'b')]), status: 400, error: /^entry "twice\.txt": appears twice in the archive$/ },
    { name: 'a sparse file', body: tarOf([{ name: 'sparse', type: 'file', typeFlag: 'S' }]), status: 400, error: /: a GNU sparse file is not supported$/ },
    { name: 'more files than MAX_BUNDLE_FILES', body: tarOf(Array.from({ length: 60 }, (_, i) => file(`f${i}.txt`))), status: 413, error: /^entry "f50\.txt": the bundle holds more than 50 entries \(MAX_BUNDLE_FILES\)$/ },
    { name: 'more bytes than MAX_BUNDLE_UNPACKED_BYTES', body: tarOf([file('a.bin', Buffer.alloc(700 * 1024)), file('b.bin', Buffer.alloc(700 * 1024))]), status: 413, error: /^entry "b\.bin": unpacked, the bundle would be more than 1048576 bytes \(MAX_BUNDLE_UNPACKED_BYTES\)$/ },
    { name: 'a gzip bomb (1 GB of zeros in about 1 MB)', body: gzipBomb(1_000_000_000), status: 413, error: /^entry "zeros\.bin": unpacked, the bundle would be more than 1048576 bytes \(MAX_BUNDLE_UNPACKED_BYTES\)$/ },
    { name: 'a bomb of zeros after the end', body: Buffer.concat([gzipSync(tarOf([file('ok.txt')])), ...Array.from({ length: 100 }, () => gzipSync(Buffer.alloc(1024 * 1024)))]), status: 413, error: /^more than 1048576 bytes after the end of the archive$/ },
    { name: 'a wrong header checksum', body: (() => { const t = tarOf([file('a.txt')]); t[148] = 0x37; return t; })(), status: 400, error: /^the entry at byte 0 \("a\.txt"\): the header checksum is wrong/ },
    { name: 'a truncated archive', body: tarOf([file('a.txt', 'y'.repeat(2000))]).subarray(0, 1200), status: 400, error: /^the archive ends at byte 1200 without its end-of-archive blocks \(truncated\?\)$/ },
    { name: 'not a tar archive', body: Buffer.from('hello, this is not a tar archive\n'.repeat(40)), status: 400, error: /^the body is not a tar archive \(plain, gzip or zstd\): its first block has no ustar header$/ },
    { name: 'corrupt gzip', body: Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0]), Buffer.alloc(600, 7)]), status: 400, error: /^the gzip stream is corrupt: / },
  ];
}
