// Copies a finished run's artifacts out of its work dir: files matching the test's patterns, core
// dumps (`core`, `core.<pid>` at the top of the work dir) and service logs.
//
// Patterns are relative paths with `*` (within one path segment), `?` and `**` (any number of
// segments). Absolute patterns and `..` segments are rejected. The walk never follows symbolic links
// (a test could point one at a host file) and only regular files are copied, each opened with
// O_NOFOLLOW and checked again after opening. It runs after the sandbox is dead; the work dir is
// owned by the sandbox's host user, which no other process should use (see sandbox-user.ts).
//
// Bounded: at most `maxFiles` files and `maxBytes` logical bytes per test (so a sparse 1 TiB file
// is never read in full), and never more bytes written for a file than it has allocated on disk
// (st_blocks * 512): copies are sparse, so a sparse file (a core dump) is kept whole at the cost of
// the data it really holds. Copies are async (never a synchronous copy). A file beyond the byte
// budget is cut to it, a core dump left out (cut, it is useless). What was left out or cut is
// returned as short notes for the result.

import { constants, promises as fs } from 'node:fs';
import path from 'node:path';
import { BLOCK_BYTES, copySparse } from '../../infra/sparse-copy.js';
import type { ArtifactLimits, CollectedFile } from '../driver.js';

/** MAX_ARTIFACT_BYTES / MAX_ARTIFACT_FILES defaults (src/config/config.ts passes the configured ones). */
export const DEFAULT_ARTIFACT_LIMITS: ArtifactLimits = { maxBytes: 1024 * 1024 * 1024, maxFiles: 1000 };
/** Notes kept per test; the rest are counted in one more. */
const MAX_NOTES = 10;

/** Upper bound on directory entries visited, so a work dir with millions of files cannot stall us. */
const MAX_ENTRIES = 100_000;

export type PatternCheck = { ok: true; regex: RegExp } | { ok: false; reason: string };

export function compileArtifactPattern(pattern: string): PatternCheck {
  let p = pattern.trim();
  if (!p) return { ok: false, reason: 'empty pattern' };
  if (p.includes('\0')) return { ok: false, reason: 'NUL in pattern' };
  if (p.startsWith('/') || /^[A-Za-z]:[\\/]/.test(p)) return { ok: false, reason: 'absolute path' };
  p = p.replace(/^(\.\/)+/, '').replace(/\/+$/, '');
  const segments = p.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.some((s) => s === '..')) return { ok: false, reason: "'..' segment" };
  if (segments.length === 0) return { ok: false, reason: 'empty pattern' };
  let re = '^';
  segments.forEach((seg, i) => {
    const last = i === segments.length - 1;
    if (seg === '**') {
      re += last ? '.*' : '(?:[^/]+/)*';
      return;
    }
    for (const ch of seg) {
      if (ch === '*') re += '[^/]*';
      else if (ch === '?') re += '[^/]';
      else re += ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
    if (!last) re += '/';
  });
  // A pattern naming a directory (`out`) collects everything below it.
  re += '(?:/.*)?$';
  return { ok: true, regex: new RegExp(re) };
}

const CORE_NAME = /^core(\.\d+)?$/;

export interface CollectInput {
  workDir: string;
  artifactDir: string;
  patterns: string[];
  /** Work-dir relative paths never collected (the driver's own files); `dir/` excludes a subtree. */
  exclude?: string[];
  /**
   * Extra host files to copy in as LOG (service logs, the security audit): source path → name in
   * artifactDir. `first`: taken before the work dir's files (a file of the test by that name is then
   * left out, with a note), so the driver's own log is kept whatever the test leaves.
   */
  logs?: Array<{ source: string; name: string; first?: boolean }>;
  limits?: ArtifactLimits;
  onRejected?: (pattern: string, reason: string) => void;
}

export interface CollectResult {
  files: CollectedFile[];
  /** What was left out or cut, for the result (at most MAX_NOTES + 1 lines). */
  notes: string[];
}

/**
 * Lists regular files below `root` (relative, `/`-separated) without following links; only those at
 * its top when not `deep`.
 */
async function walk(root: string, notes: string[], deep: boolean): Promise<string[]> {
  const out: string[] = [];
  const stack: string[] = [''];
  let seen = 0;
  let unreadable = 0;
  while (stack.length > 0) {
    const rel = stack.pop()!;
    let entries;
    try {
      entries = await fs.readdir(path.join(root, rel), { withFileTypes: true });
    } catch {
      unreadable += 1; // too deep (ENAMETOOLONG), unreadable, or replaced meanwhile: said in a note
      continue;
    }
    for (const e of entries) {
      if (++seen > MAX_ENTRIES) {
        notes.push(`only the first ${MAX_ENTRIES} entries of the work dir were looked at`);
        return out.sort();
      }
      const child = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        if (deep) stack.push(child);
      }
      else if (e.isFile()) out.push(child);
      // symlinks, sockets, fifos, devices: skipped
    }
  }
  if (unreadable) notes.push(`${unreadable} director${unreadable === 1 ? 'y' : 'ies'} of the work dir could not be read (too deep or unreadable)`);
  return out.sort();
}

type CopyResult = { bytes: number; size: number; allocated: number; cutAtWriteLimit: boolean } | { skipped: string };

/**
 * Copies one regular file sparsely (see infra/sparse-copy.ts): its first `budget` logical bytes (the
 * whole file when it fits), writing no more than the data it has allocated (st_blocks * 512), so a
 * core dump is kept whole at the cost of the pages it really holds. `whole`: a file longer than the
 * budget is left out rather than cut (a cut core dump is useless). The source is opened without
 * following a final symbolic link and without blocking on a FIFO, then checked to be a regular file:
 * the work dir belongs to the sandbox user, so an entry seen as a file by the walk is never trusted
 * to still be one. The destination is created anew (O_EXCL).
 */
async function copyOne(source: string, dest: string, budget: number, whole: boolean): Promise<CopyResult> {
  let src;
  try {
    src = await fs.open(source, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    return { skipped: `cannot be opened (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` };
  }
  try {
    const st = await src.stat();
    if (!st.isFile()) return { skipped: 'is no longer a regular file' };
    if (whole && st.size > budget) return { skipped: `is ${formatBytes(st.size)}, more than the ${formatBytes(budget)} left of the artifact byte limit` };
    const allocated = st.blocks * 512;
    await fs.mkdir(path.dirname(dest), { recursive: true });
    let out;
    try {
      out = await fs.open(dest, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return { skipped: 'has the name of a file collected before it' };
      throw err;
    }
    try {
      // A file claiming no blocks may still hold a few bytes inline: one block of slack.
      const r = await copySparse(src, out, { length: Math.max(0, Math.min(st.size, budget)), maxWritten: Math.max(allocated, BLOCK_BYTES) });
      return { bytes: r.bytes, size: st.size, allocated, cutAtWriteLimit: r.cutAtWriteLimit };
    } finally {
      await out.close();
    }
  } finally {
    await src.close().catch((err: Error) => process.emitWarning(`closing ${source}: ${err.message}`));
  }
}

function formatBytes(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return i === 0 ? `${n} bytes` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export async function collectArtifacts(input: CollectInput): Promise<CollectResult> {
  const limits = input.limits ?? DEFAULT_ARTIFACT_LIMITS;
  const compiled: RegExp[] = [];
  for (const p of input.patterns) {
    const c = compileArtifactPattern(p);
    if (c.ok) compiled.push(c.regex);
    else input.onRejected?.(p, c.reason);
  }
  const exclude = new Set((input.exclude ?? []).filter((e) => !e.endsWith('/')));
  const excludeDirs = (input.exclude ?? []).filter((e) => e.endsWith('/'));
  const files: CollectedFile[] = [];
  const notes: string[] = [];
  let extraNotes = 0;
  const note = (text: string) => {
    if (notes.length < MAX_NOTES) notes.push(text);
    else extraNotes += 1;
  };
  const walkNotes: string[] = [];
  // without patterns only core dumps are taken, at the top of the work dir
  const all = await walk(input.workDir, walkNotes, compiled.length > 0);
  walkNotes.forEach(note);
  const artifactRoot = path.resolve(input.artifactDir);
  let madeDir = false;
  let bytesLeft = limits.maxBytes;
  let overFiles = 0;
  let overBytes = 0;

  const take = async (source: string, name: string, kind: CollectedFile['kind']) => {
    const dest = path.join(artifactRoot, name);
    if (!dest.startsWith(artifactRoot + path.sep)) return;
    if (files.length >= limits.maxFiles) {
      overFiles += 1;
      return;
    }
    if (bytesLeft <= 0) {
      overBytes += 1;
      return;
    }
    if (!madeDir) await fs.mkdir(artifactRoot, { recursive: true });
    madeDir = true;
    const r = await copyOne(source, dest, bytesLeft, kind === 'CORE_DUMP');
    if ('skipped' in r) {
      note(`${name} left out: it ${r.skipped}`);
      return;
    }
    bytesLeft -= r.bytes;
    if (r.bytes < r.size) {
      const why = r.cutAtWriteLimit
        ? `it held more data than its ${formatBytes(r.allocated)} allocated`
        : `the artifact byte limit of ${formatBytes(limits.maxBytes)} per test was reached`;
      note(`${name} cut to ${formatBytes(r.bytes)} of ${formatBytes(r.size)} (${why})`);
    }
    files.push({ name, kind, path: dest, sizeBytes: r.bytes });
  };

  const takeLog = async (log: { source: string; name: string }) => {
    try {
      const st = await fs.lstat(log.source);
      if (!st.isFile()) return;
    } catch {
      return; // the service wrote no log
    }
    await take(log.source, log.name, 'LOG');
  };
  for (const log of input.logs ?? []) if (log.first) await takeLog(log);
  for (const rel of all) {
    if (exclude.has(rel) || excludeDirs.some((d) => rel.startsWith(d))) continue;
    const isCore = !rel.includes('/') && CORE_NAME.test(rel);
    if (!isCore && !compiled.some((re) => re.test(rel))) continue;
    await take(path.join(input.workDir, rel), rel, isCore ? 'CORE_DUMP' : 'FILE');
  }
  for (const log of input.logs ?? []) if (!log.first) await takeLog(log);
  // Counts first: they matter more than any single file's note.
  const counts: string[] = [];
  if (overFiles) counts.push(`${overFiles} more matching file${overFiles === 1 ? '' : 's'} left out (limit ${limits.maxFiles} files per test)`);
  if (overBytes) counts.push(`${overBytes} more matching file${overBytes === 1 ? '' : 's'} left out (limit ${formatBytes(limits.maxBytes)} per test reached)`);
  if (extraNotes) notes.push(`and ${extraNotes} more note${extraNotes === 1 ? '' : 's'}`);
  return { files, notes: [...counts, ...notes] };
}
