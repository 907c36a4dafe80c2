// Pure rules of artifact downloads: the Content-Type a name gets, a Content-Disposition that is safe
// whatever the name holds (RFC 6266), the Range a request asks for (RFC 9110 §14), and the paths of a
// plan's tar. Artifact and test names come from tests: anything may be in them.

/**
 * Content-Type by extension. Deliberately small: what a browser would render and run (HTML, SVG, XHTML)
 * is served as bytes, never as a page of this origin.
 */
const CONTENT_TYPES: Record<string, string> = {
  log: 'text/plain; charset=utf-8',
  txt: 'text/plain; charset=utf-8',
  out: 'text/plain; charset=utf-8',
  md: 'text/plain; charset=utf-8',
  csv: 'text/csv; charset=utf-8',
  json: 'application/json',
  xml: 'application/xml',
  gz: 'application/gzip',
  tgz: 'application/gzip',
  tar: 'application/x-tar',
  zip: 'application/zip',
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
};
export const OCTET_STREAM = 'application/octet-stream';

export function contentTypeOf(name: string): string {
  const base = baseName(name);
  const dot = base.lastIndexOf('.');
  if (dot <= 0) return OCTET_STREAM;
  return CONTENT_TYPES[base.slice(dot + 1).toLowerCase()] ?? OCTET_STREAM;
}

function baseName(name: string): string {
  const parts = name.split('/').filter((p) => p !== '');
  return parts[parts.length - 1] ?? '';
}

/** RFC 8187 ext-value characters kept as they are; everything else is %-encoded UTF-8. */
function encodeExtValue(s: string): string {
  return encodeURIComponent(s).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * `attachment; filename="<ASCII fallback>"; filename*=UTF-8''<the name, encoded>` for the last segment
 * of the name. The fallback holds printable ASCII only, without `"`, `\`, `%`, `/` or `;`: nothing in
 * it can end the header or the parameter.
 */
export function contentDisposition(name: string, fallback = 'artifact'): string {
  const base = baseName(name).replace(/[\u0000-\u001f\u007f]/g, '_');
  let ascii = base.replace(/[^\x20-\x7e]|["\\%/;]/g, '_').trim().slice(0, 200);
  if (!ascii || /^\.+$/.test(ascii)) ascii = fallback;
  const encoded = base && !/^\.+$/.test(base) ? encodeExtValue(base.slice(0, 500)) : encodeExtValue(fallback);
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encoded}`;
}

export type RangeAnswer =
  /** No Range, or one this server ignores (malformed, several ranges): 200 with every byte. */
  | { kind: 'whole' }
  /** 206: bytes start..end inclusive. */
  | { kind: 'partial'; start: number; end: number }
  /** 416: no byte of the range is in the blob. */
  | { kind: 'unsatisfiable' };

/**
 * The answer to a Range header for a blob of `size` bytes. One range is served; a list of several is
 * answered whole (allowed: a server may ignore Range); a malformed header is ignored.
 */
export function parseRange(header: string | undefined, size: number): RangeAnswer {
  if (header === undefined) return { kind: 'whole' };
  const m = /^\s*bytes\s*=\s*(.*)$/i.exec(header);
  if (!m) return { kind: 'whole' };
  const specs = m[1].split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (specs.length !== 1) return { kind: 'whole' };
  const r = /^(\d*)-(\d*)$/.exec(specs[0]);
  if (!r || (r[1] === '' && r[2] === '')) return { kind: 'whole' };
  if (r[1] === '') {
    const suffix = Number(r[2]);
    if (!Number.isSafeInteger(suffix)) return { kind: 'whole' };
    if (suffix === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'partial', start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(r[1]);
  const last = r[2] === '' ? null : Number(r[2]);
  if (!Number.isSafeInteger(start) || (last !== null && !Number.isSafeInteger(last))) return { kind: 'whole' };
  if (last !== null && last < start) return { kind: 'whole' }; // invalid: ignored
  if (start >= size) return { kind: 'unsatisfiable' };
  return { kind: 'partial', start, end: last === null ? size - 1 : Math.min(last, size - 1) };
}

/** One path segment of a tar entry: no separator, no control character, never `.` or `..`, never empty. */
export function safeSegment(s: string): string {
  let out = s.replace(/[\u0000-\u001f\u007f/\\]/g, '_');
  if (out === '' || /^\.+$/.test(out)) out = out.replace(/\./g, '_') || '_';
  return [...out].slice(0, 200).join('');
}

/** `a/b/../c` → `a/b/__/c`: every segment made safe, empty ones dropped. */
export function safeRelativePath(name: string): string {
  const parts = name.split('/').filter((p) => p !== '');
  return parts.length ? parts.map(safeSegment).join('/') : '_';
}

/**
 * The directory names of a plan's tests in its tar, unique even where two names become the same once
 * made safe (`a/b` and `a_b`): the later one gets `~2`, `~3`…
 */
export class TarDirectories {
  private readonly byTest = new Map<string, string>();
  private readonly used = new Set<string>();

  of(testId: string, testName: string): string {
    const known = this.byTest.get(testId);
    if (known !== undefined) return known;
    const base = safeSegment(testName);
    let dir = base;
    for (let n = 2; this.used.has(dir); n++) dir = `${base}~${n}`;
    this.used.add(dir);
    this.byTest.set(testId, dir);
    return dir;
  }
}

/** `<test>/<attempt>/<artifact name>` for one artifact of the plan's tar. */
export function tarEntryPath(testDir: string, attempt: number, artifactName: string): string {
  return `${testDir}/${attempt}/${safeRelativePath(artifactName)}`;
}
