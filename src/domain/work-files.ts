// What a test finds in its working directory besides its script: a bundle (an uploaded tar archive)
// and inline files. The rules for their paths (one rule for a tar entry and a FileInput), the decoding
// of a FileInput, and how the layers combine (bundle, then the plan's files, then the test's: a later
// layer wins). Pure.

/** A path longer than this (in UTF-8 bytes) is refused: PATH_MAX of Linux. */
export const MAX_PATH_BYTES = 4096;
/** A part of a path longer than this (in UTF-8 bytes) is refused: NAME_MAX of ext4. */
export const MAX_NAME_BYTES = 255;
/** Directories deep: well above any real project, well below what makes a walk costly. */
export const MAX_PATH_DEPTH = 128;

/** `sha256:` and 64 lower-case hex digits: the id POST /bundles answers. */
export const BUNDLE_ID = /^sha256:[0-9a-f]{64}$/;

/**
 * Why `p` cannot be a path inside the working directory, or null. Relative, not empty, parts
 * separated by single "/", no "." or ".." part, no NUL or other control character (a file name with a
 * newline breaks every script that lists files), within PATH_MAX/NAME_MAX.
 */
export function relativePathProblem(p: string): string | null {
  if (p === '') return 'must not be empty';
  if (p.includes('\0')) return 'must not contain NUL';
  if (/[\u0001-\u001f\u007f]/.test(p)) return 'must not contain control characters (a newline, a tab, ...)';
  if (p.startsWith('/')) return 'must be relative to the working directory, not start with "/"';
  if (Buffer.byteLength(p) > MAX_PATH_BYTES) return `is longer than ${MAX_PATH_BYTES} bytes`;
  const parts = p.split('/');
  if (parts.length > MAX_PATH_DEPTH) return `is more than ${MAX_PATH_DEPTH} directories deep`;
  for (const part of parts) {
    if (part === '..') return 'must not contain ".."';
    if (part === '.') return 'must not contain "." as a part';
    if (part === '') return 'must not contain an empty part ("//", or a "/" at the end)';
    if (Buffer.byteLength(part) > MAX_NAME_BYTES) return `has a part longer than ${MAX_NAME_BYTES} bytes`;
  }
  return null;
}

export type FileEncoding = 'utf8' | 'base64';

/** A file as the API takes it (FileInput). */
export interface FileInput {
  path: string;
  content: string;
  encoding?: string | null;
  executable?: boolean | null;
}

/** A file as it is stored and handed to a driver: its bytes in base64, whatever the input's encoding. */
export interface WorkFile {
  path: string;
  base64: string;
  executable: boolean;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** The decoded size of a FileInput's content, or why it cannot be decoded. */
export function fileContentBytes(f: FileInput): { bytes: number } | { problem: string; field: 'encoding' | 'content' } {
  const encoding = f.encoding ?? 'utf8';
  if (encoding === 'utf8') return { bytes: Buffer.byteLength(f.content) };
  if (encoding !== 'base64') return { problem: `must be "utf8" or "base64" (got "${String(encoding).slice(0, 20)}")`, field: 'encoding' };
  if (!BASE64.test(f.content)) return { problem: 'is not valid base64 (A-Z, a-z, 0-9, "+", "/", padded with "=" to a multiple of 4, no line breaks)', field: 'content' };
  const pad = f.content.endsWith('==') ? 2 : f.content.endsWith('=') ? 1 : 0;
  return { bytes: (f.content.length / 4) * 3 - pad };
}

/** A valid FileInput as stored. */
export function toWorkFile(f: FileInput): WorkFile {
  const encoding = f.encoding ?? 'utf8';
  return {
    path: f.path,
    base64: encoding === 'base64' ? f.content : Buffer.from(f.content, 'utf8').toString('base64'),
    executable: f.executable ?? false,
  };
}

export interface FileLimits {
  /** Files in one list (a plan's, or one test's). */
  maxFiles: number;
  /** Decoded bytes of one file. */
  maxFileBytes: number;
  /** Decoded bytes of one list's files together. */
  maxFilesBytes: number;
}

export interface FileProblem {
  /** relative to the list: "[3].path", or "" for the list itself */
  at: string;
  message: string;
}

/** Every problem of one list of files (the plan's or a test's). */
export function fileListProblems(files: readonly FileInput[], limits: FileLimits): FileProblem[] {
  const out: FileProblem[] = [];
  if (files.length > limits.maxFiles) out.push({ at: '', message: `holds ${files.length} files, more than ${limits.maxFiles}` });
  const seen = new Map<string, number>();
  let total = 0;
  files.forEach((f, i) => {
    const problem = relativePathProblem(f.path);
    if (problem) out.push({ at: `[${i}].path`, message: problem });
    else {
      const first = seen.get(f.path);
      if (first !== undefined) out.push({ at: `[${i}].path`, message: `"${f.path.slice(0, 80)}" is given twice (also files[${first}])` });
      else seen.set(f.path, i);
    }
    const size = fileContentBytes(f);
    if ('problem' in size) out.push({ at: `[${i}].${size.field}`, message: size.problem });
    else {
      total += size.bytes;
      if (size.bytes > limits.maxFileBytes) out.push({ at: `[${i}].content`, message: `is ${size.bytes} bytes, more than ${limits.maxFileBytes}` });
    }
  });
  if (total > limits.maxFilesBytes) out.push({ at: '', message: `hold ${total} bytes together, more than ${limits.maxFilesBytes}` });
  return out;
}

/**
 * The files of several layers as one list, a later layer winning: a path given again replaces the
 * earlier file, and a file replaces an earlier one at a directory above it ("a" then "a/b": a
 * directory "a" holding "b") or below it ("a/b" then "a": the file "a"). In the order written.
 */
export function mergeFileLayers(layers: readonly (readonly WorkFile[])[]): WorkFile[] {
  const byPath = new Map<string, WorkFile>();
  for (const layer of layers) {
    for (const f of layer) {
      // an earlier file where this one needs a directory, or below where this one is a file
      const parts = f.path.split('/');
      for (let i = 1; i < parts.length; i++) byPath.delete(parts.slice(0, i).join('/'));
      const below = `${f.path}/`;
      for (const p of [...byPath.keys()]) if (p.startsWith(below)) byPath.delete(p);
      byPath.delete(f.path); // re-inserted last: the map's order is the order written
      byPath.set(f.path, f);
    }
  }
  return [...byPath.values()];
}

/** Decoded bytes of stored files. */
export function workFilesBytes(files: readonly WorkFile[]): number {
  let n = 0;
  for (const f of files) n += Math.floor((f.base64.length * 3) / 4) - (f.base64.endsWith('==') ? 2 : f.base64.endsWith('=') ? 1 : 0);
  return n;
}
