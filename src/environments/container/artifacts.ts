// Copies a finished run's artifacts out of its work dir: files matching the test's patterns, core
// dumps (`core`, `core.<pid>` at the top of the work dir) and service logs.
//
// Patterns are relative paths with `*` (within one path segment), `?` and `**` (any number of
// segments). Absolute patterns and `..` segments are rejected. The walk never follows symbolic links
// (a test could point one at a host file) and only regular files are copied, each opened with
// O_NOFOLLOW and checked again after opening. It runs after the sandbox is dead; the work dir is
// owned by the sandbox's host user, which no other process should use (see sandbox-user.ts).

import { constants, createWriteStream, promises as fs } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import path from 'node:path';
import type { CollectedFile } from '../driver.js';

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
  /** Work-dir relative paths never collected (the driver's own files). */
  exclude?: string[];
  /** Extra host files to copy in as LOG (service logs): source path → name in artifactDir. */
  logs?: Array<{ source: string; name: string }>;
  onRejected?: (pattern: string, reason: string) => void;
}

/** Lists regular files below `root` (relative, `/`-separated) without following links. */
async function walk(root: string): Promise<string[]> {
  const out: string[] = [];
  const stack: string[] = [''];
  let seen = 0;
  while (stack.length > 0) {
    const rel = stack.pop()!;
    let entries;
    try {
      entries = await fs.readdir(path.join(root, rel), { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries) {
      if (++seen > MAX_ENTRIES) return out;
      const child = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) stack.push(child);
      else if (e.isFile()) out.push(child);
      // symlinks, sockets, fifos, devices: skipped
    }
  }
  return out.sort();
}

/**
 * Copies one regular file. The source is opened without following a final symbolic link and
 * without blocking on a FIFO, then checked to be a regular file: the work dir belongs to the
 * sandbox user, so an entry seen as a file by the walk is never trusted to still be one.
 */
async function copyOne(source: string, dest: string): Promise<number | null> {
  const src = await fs.open(source, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(() => null);
  if (!src) return null;
  try {
    if (!(await src.stat()).isFile()) return null;
    await fs.mkdir(path.dirname(dest), { recursive: true });
    await pipeline(src.createReadStream({ autoClose: false }), createWriteStream(dest));
    return (await fs.stat(dest)).size;
  } finally {
    await src.close().catch(() => undefined);
  }
}

export async function collectArtifacts(input: CollectInput): Promise<CollectedFile[]> {
  const compiled: RegExp[] = [];
  for (const p of input.patterns) {
    const c = compileArtifactPattern(p);
    if (c.ok) compiled.push(c.regex);
    else input.onRejected?.(p, c.reason);
  }
  const exclude = new Set(input.exclude ?? []);
  const files: CollectedFile[] = [];
  const all = await walk(input.workDir);
  const artifactRoot = path.resolve(input.artifactDir);
  let madeDir = false;
  const ensureDir = async () => {
    if (!madeDir) await fs.mkdir(artifactRoot, { recursive: true });
    madeDir = true;
  };
  for (const rel of all) {
    if (exclude.has(rel)) continue;
    const isCore = !rel.includes('/') && CORE_NAME.test(rel);
    if (!isCore && !compiled.some((re) => re.test(rel))) continue;
    const dest = path.join(artifactRoot, rel);
    if (!dest.startsWith(artifactRoot + path.sep)) continue;
    await ensureDir();
    const sizeBytes = await copyOne(path.join(input.workDir, rel), dest);
    if (sizeBytes === null) continue;
    files.push({ name: rel, kind: isCore ? 'CORE_DUMP' : 'FILE', path: dest, sizeBytes });
  }
  for (const log of input.logs ?? []) {
    try {
      const st = await fs.lstat(log.source);
      if (!st.isFile()) continue;
    } catch {
      continue;
    }
    const dest = path.join(artifactRoot, log.name);
    if (!dest.startsWith(artifactRoot + path.sep)) continue;
    await ensureDir();
    const sizeBytes = await copyOne(log.source, dest);
    if (sizeBytes === null) continue;
    files.push({ name: log.name, kind: 'LOG', path: dest, sizeBytes });
  }
  return files;
}
