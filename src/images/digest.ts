// An image's digest: sha256 over a canonical JSON of its definition (packages, setup, env) and its
// source's identity — a Debian suite, variant and mirror; the parent's digest; an OCI image's manifest
// digest. A changed definition, or a changed source, gives a new digest and so a new version.

import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { ImageDefinition, ImageSource } from '../config/images';
import { ImageBuildError, readableLine, runTool, oneLine } from './tool';

/**
 * Bumped when the builder makes a different root filesystem from the same definition (a new
 * post-processing step): every image then gets a new version.
 */
export const BUILD_FORMAT = 1;
export const DEBIAN_VARIANT = 'minbase';

/** What a source is, as far as its content goes. */
export type SourceIdentity =
  | { type: 'debian'; suite: string; variant: string; mirror: string }
  | { type: 'image'; parent: string; digest: string }
  | { type: 'oci'; transport: 'oci' | 'oci-archive' | 'docker-archive' | 'docker'; manifestDigest: string };

/** JSON with object keys sorted, no spaces: the same value always gives the same text. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

/** The digest of a definition over its source's identity: "sha256:<64 hex>". Pure. */
export function definitionDigest(def: Pick<ImageDefinition, 'packages' | 'setup' | 'env'>, source: SourceIdentity): string {
  const canonical = canonicalJson({ format: BUILD_FORMAT, source, packages: def.packages, setup: def.setup ?? null, env: def.env });
  return `sha256:${createHash('sha256').update(canonical).digest('hex')}`;
}

export interface DigestContext {
  /** The Debian mirror debian:SUITE images are made from. */
  mirror: string;
  /** skopeo's path and environment (for archives and registries). */
  skopeo: string;
  env: Record<string, string>;
  signal?: AbortSignal;
}

/**
 * The digest of every image in `names` (default: all) and of the images they build on, computed
 * once each. An OCI source that cannot be read throws an Error naming the image and the source.
 */
export async function computeDigests(defs: readonly ImageDefinition[], ctx: DigestContext, names?: readonly string[]): Promise<Map<string, { digest: string; source: SourceIdentity }>> {
  const out = new Map<string, { digest: string; source: SourceIdentity }>();
  const visiting = new Set<string>();
  const visit = async (name: string): Promise<{ digest: string; source: SourceIdentity }> => {
    const done = out.get(name);
    if (done) return done;
    const def = defs.find((d) => d.name === name);
    if (!def) throw new Error(`no image named "${name}" is defined`);
    if (visiting.has(name)) throw new Error(`images build on each other in a cycle through "${name}"`);
    visiting.add(name);
    let source: SourceIdentity;
    if (def.source.type === 'image') source = { type: 'image', parent: def.source.name, digest: (await visit(def.source.name)).digest };
    else {
      try {
        source = await sourceIdentity(def, ctx);
      } catch (err) {
        if (ctx.signal?.aborted) throw err;
        throw new ImageBuildError(def.name, 'source', (err as Error).message);
      }
    }
    const result = { digest: definitionDigest(def, source), source };
    out.set(name, result);
    return result;
  };
  for (const name of names ?? defs.map((d) => d.name)) await visit(name);
  return out;
}

/** The identity of a source other than image:NAME. */
export async function sourceIdentity(def: ImageDefinition, ctx: DigestContext): Promise<SourceIdentity> {
  const s = def.source;
  switch (s.type) {
    case 'debian':
      return { type: 'debian', suite: s.suite, variant: DEBIAN_VARIANT, mirror: ctx.mirror };
    case 'image':
      throw new Error('sourceIdentity: image:NAME is the parent digest (computeDigests)');
    case 'oci':
      return { type: 'oci', transport: 'oci', manifestDigest: await ociLayoutDigest(s.path, s.tag) };
    default:
      return { type: 'oci', transport: s.type === 'docker' ? 'docker' : s.type, manifestDigest: await skopeoDigest(s, ctx) };
  }
}

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

/** The manifest digest of an image in an OCI layout (its index.json), as skopeo would pick it. */
export async function ociLayoutDigest(dir: string, tag?: string): Promise<string> {
  const where = `oci:${dir}${tag ? `:${tag}` : ''}`;
  let index: { manifests?: { digest?: string; annotations?: Record<string, string> }[] };
  try {
    index = JSON.parse(await fs.readFile(path.join(dir, 'index.json'), 'utf8'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(`${where}: ${code === 'ENOENT' ? 'not an OCI layout (no index.json)' : `cannot read its index.json: ${oneLine((err as Error).message)}`}`);
  }
  const manifests = Array.isArray(index.manifests) ? index.manifests : [];
  const found = tag
    ? manifests.filter((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag)
    : manifests.length === 1
      ? manifests
      : [];
  if (found.length !== 1) {
    const tags = manifests.map((m) => m.annotations?.['org.opencontainers.image.ref.name']).filter(Boolean);
    throw new Error(`${where}: ${tag ? `no image tagged "${tag}"` : `${manifests.length} images in the layout, name one with :TAG`} (tags: ${tags.join(', ') || 'none'})`);
  }
  const digest = found[0].digest;
  if (!digest || !DIGEST_RE.test(digest)) throw new Error(`${where}: the index names no sha256 manifest digest`);
  return digest;
}

/** skopeo's name of a source other than a layout directory or a parent. */
export function skopeoReference(s: Exclude<ImageSource, { type: 'debian' } | { type: 'image' }>): string {
  switch (s.type) {
    case 'oci':
    case 'oci-archive':
      return `${s.type}:${s.path}${s.tag ? `:${s.tag}` : ''}`;
    case 'docker-archive':
      return `docker-archive:${s.path}`;
    case 'docker':
      return `docker://${s.ref}`;
  }
}

/** The manifest digest `skopeo inspect` reports for the source. */
async function skopeoDigest(s: Exclude<ImageSource, { type: 'debian' } | { type: 'image' }>, ctx: DigestContext): Promise<string> {
  const ref = skopeoReference(s);
  const fail = (why: string) => new Error(`cannot inspect ${ref}: ${oneLine(why)}`);
  const r = await runTool({ command: ctx.skopeo, args: ['--command-timeout', '120s', 'inspect', ref], env: ctx.env, signal: ctx.signal }).catch((err: NodeJS.ErrnoException) => {
    throw fail(err.code === 'ENOENT' ? `${ctx.skopeo} not found (install the Debian package skopeo)` : err.message);
  });
  if (r.code === 127) throw fail(`skopeo not found (install the Debian package skopeo)`);
  if (r.code !== 0) throw fail(r.tail.filter((l) => l.trim() !== '').slice(-2).map(readableLine).join('; ') || `skopeo exit ${r.code}`);
  let digest: unknown;
  try {
    digest = (JSON.parse(r.stdout) as { Digest?: unknown }).Digest;
  } catch {
    throw fail('skopeo inspect did not answer JSON'); // the answer is all there is to say: it is not JSON
  }
  if (typeof digest !== 'string' || !DIGEST_RE.test(digest)) throw fail(`skopeo inspect reports no sha256 digest (${String(digest)})`);
  return digest;
}
