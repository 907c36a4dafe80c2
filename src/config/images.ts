// Image definitions: IMAGES (JSON text) or IMAGES_FILE (a JSON or YAML file), a list of
// `{ name, from, packages?, setup?, env? }`, validated with every problem listed (as POOLS is).
// Parsed once here; src/images builds and stores them, pools name them.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';

/** Lower-case letters, digits, ".", "_" and "-", at most 63; a directory name under IMAGE_DIR. */
export const IMAGE_NAME_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/;
/** Debian package names (policy 5.6.1: lower case, digits, "+", "-", "."). */
export const PACKAGE_NAME_RE = /^[a-z0-9][a-z0-9+.-]{0,99}$/;
const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const SUITE_RE = /^[a-z][a-z0-9-]{0,31}$/;
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
/** A registry reference: [host[:port]/]path[:tag][@sha256:hex]. */
const DOCKER_REF_RE = /^[a-z0-9][a-z0-9._-]*(:[0-9]+)?(\/[a-z0-9][a-z0-9._-]*)*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(@sha256:[0-9a-f]{64})?$/;
const MAX_SETUP_BYTES = 64 * 1024;
const MAX_ENV_VALUE_BYTES = 32 * 1024;

/** Where an image's root filesystem comes from (the parsed `from`). Paths are absolute. */
export type ImageSource =
  | { type: 'debian'; suite: string }
  | { type: 'image'; name: string }
  | { type: 'oci'; path: string; tag?: string }
  | { type: 'oci-archive'; path: string; tag?: string }
  | { type: 'docker-archive'; path: string }
  | { type: 'docker'; ref: string };

export interface ImageDefinition {
  name: string;
  /** As written in the configuration, e.g. "image:debian-bookworm" (Image.source in the API). */
  from: string;
  source: ImageSource;
  /** Debian packages installed with apt-get, in the order given. */
  packages: string[];
  /** Shell text run with `/bin/sh -e` as root in the build sandbox, after the packages. */
  setup?: string;
  /** Variables every test of the image sees (over the image's own OCI Env). */
  env: Record<string, string>;
}

export const DEFAULT_IMAGE_NAME = 'debian-bookworm';
export const DEFAULT_SERVICES_IMAGE_NAME = 'debian-bookworm-services';

/**
 * What every test type needs out of the box: the minbase root filesystem (UNIT tests; what the
 * first version had), and on top of it common tools and the services an INTEGRATION test starts
 * itself (Redis, PostgreSQL: initdb, pg_ctl and pg_isready are on PATH).
 */
export const DEFAULT_IMAGES: ImageDefinition[] = [
  { name: DEFAULT_IMAGE_NAME, from: 'debian:bookworm', source: { type: 'debian', suite: 'bookworm' }, packages: [], env: {} },
  {
    name: DEFAULT_SERVICES_IMAGE_NAME,
    from: `image:${DEFAULT_IMAGE_NAME}`,
    source: { type: 'image', name: DEFAULT_IMAGE_NAME },
    packages: ['python3', 'curl', 'git', 'jq', 'ca-certificates', 'procps', 'redis-server', 'redis-tools', 'postgresql'],
    // the cluster the package makes is of no use in a read-only root: tests run initdb in their own dir
    setup: 'rm -rf /var/lib/postgresql/15/main /etc/postgresql/15/main',
    env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/postgresql/15/bin' },
  },
];

const noNul = (what: string) => (s: string) => !s.includes('\0') || `${what} must not contain a NUL character`;
const bytes = (s: string) => Buffer.byteLength(s, 'utf8');

/** `from` parsed; paths relative to `baseDir`. A string is the problem. */
export function parseImageSource(from: string, baseDir: string): ImageSource | string {
  if (from.includes('\0')) return 'must not contain a NUL character';
  const colon = from.indexOf(':');
  const kind = colon === -1 ? '' : from.slice(0, colon);
  const rest = colon === -1 ? '' : from.slice(colon + 1);
  const file = (p: string) => path.resolve(baseDir, p);
  switch (kind) {
    case 'debian':
      return SUITE_RE.test(rest) ? { type: 'debian', suite: rest } : `debian:SUITE needs a suite name (e.g. debian:bookworm), not "${rest}"`;
    case 'image':
      return IMAGE_NAME_RE.test(rest) ? { type: 'image', name: rest } : `image:NAME needs an image name, not "${rest}"`;
    case 'oci':
    case 'oci-archive': {
      // As skopeo reads it: the path ends at the first ":" after the transport, the tag follows.
      const [p, tag, ...more] = rest.split(':');
      if (!p) return `${kind}:${kind === 'oci' ? 'DIR' : 'FILE'}[:TAG] needs a path`;
      if (more.length > 0 || (tag !== undefined && !TAG_RE.test(tag))) return `${kind}: the path cannot hold ":" and the tag must be letters, digits, ".", "_" and "-" (got "${rest}")`;
      return tag === undefined ? { type: kind, path: file(p) } : { type: kind, path: file(p), tag };
    }
    case 'docker-archive':
      if (!rest) return 'docker-archive:FILE needs a path';
      if (rest.includes(':')) return 'docker-archive:FILE: the path cannot hold ":"';
      return { type: 'docker-archive', path: file(rest) };
    case 'docker':
      if (!rest.startsWith('//') || !DOCKER_REF_RE.test(rest.slice(2)) || rest.length > 300) return `docker://REF needs a registry reference such as docker://docker.io/library/debian:bookworm (got "${from}")`;
      return { type: 'docker', ref: rest.slice(2) };
    default:
      return 'one of debian:SUITE, image:NAME, oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE, docker://REF';
  }
}

function imageEntrySchema(baseDir: string) {
  return z
    .object({
      name: z.string().regex(IMAGE_NAME_RE, 'lower-case letters, digits, ".", "-" and "_", starting with a letter or digit; at most 63'),
      from: z.string().superRefine((from, ctx) => {
        const source = parseImageSource(from, baseDir);
        if (typeof source === 'string') ctx.addIssue({ code: 'custom', message: source });
      }),
      packages: z
        .array(z.string().regex(PACKAGE_NAME_RE, 'a Debian package name: lower-case letters, digits, "+", "-" and ".", starting with a letter or digit'))
        .max(1000)
        .default([]),
      setup: z
        .string()
        .refine((s) => !s.includes('\0'), 'must not contain a NUL character')
        .refine((s) => bytes(s) <= MAX_SETUP_BYTES, `at most ${MAX_SETUP_BYTES / 1024} KiB`)
        .optional(),
      env: z
        .record(
          z.string(),
          z.string().refine((s) => !s.includes('\0'), 'must not contain a NUL character').refine((s) => bytes(s) <= MAX_ENV_VALUE_BYTES, `at most ${MAX_ENV_VALUE_BYTES / 1024} KiB`),
        )
        .superRefine((env, ctx) => {
          for (const k of Object.keys(env)) {
            if (!ENV_NAME_RE.test(k)) ctx.addIssue({ code: 'custom', path: [k], message: 'variable names are letters, digits and "_", not starting with a digit' });
          }
        })
        .default({}),
    })
    .strict()
    .transform((entry): ImageDefinition => {
      const def: ImageDefinition = { name: entry.name, from: entry.from, source: parseImageSource(entry.from, baseDir) as ImageSource, packages: entry.packages, env: entry.env };
      if (entry.setup !== undefined) def.setup = entry.setup;
      return def;
    });
}

/** The list's own schema: at least one image, each one valid on its own. */
export function imagesSchema(baseDir: string) {
  return z.array(imageEntrySchema(baseDir)).min(1, 'at least one image');
}

/**
 * Problems between entries, found on the raw list (so they are listed with those of single entries):
 * names unique, every image:NAME names a defined image, no cycle.
 */
export function crossImageProblems(raw: unknown, defaults: readonly string[] = []): { path: (string | number)[]; message: string }[] {
  if (!Array.isArray(raw)) return [];
  const builtIn = new Set(defaults);
  const entries = raw.map((e) => (e && typeof e === 'object' ? (e as { name?: unknown; from?: unknown }) : {}));
  const names = entries.map((e) => (typeof e.name === 'string' ? e.name : null));
  const parentOf = (e: { from?: unknown }) => (typeof e.from === 'string' && e.from.startsWith('image:') ? e.from.slice(6) : null);
  const firstIndex = new Map<string, number>();
  const out: { path: (string | number)[]; message: string }[] = [];
  names.forEach((n, i) => {
    if (n === null) return;
    if (firstIndex.has(n)) out.push({ path: [i, 'name'], message: `duplicate image name "${n}"` });
    else firstIndex.set(n, i);
  });
  entries.forEach((e, i) => {
    const parent = parentOf(e);
    if (parent === null || !IMAGE_NAME_RE.test(parent)) return; // a malformed from is the entry's own problem
    if (!firstIndex.has(parent)) {
      if (!builtIn.has(parent)) out.push({ path: [i, 'from'], message: `no image named "${parent}" is defined` });
      return; // a default image (which builds on no configured one)
    }
    const chain = [names[i] ?? ''];
    for (let next: string | null = parent; next !== null; ) {
      chain.push(next);
      if (next === names[i]) {
        out.push({ path: [i, 'from'], message: `images build on each other in a cycle: ${chain.join(' → ')}` });
        break;
      }
      if (chain.indexOf(next) < chain.length - 1) break; // a cycle not through this entry: reported at its members
      const at = firstIndex.get(next);
      next = at === undefined ? null : parentOf(entries[at]);
    }
  });
  return out;
}

/**
 * Reads the definitions from IMAGES (JSON text, wins) or IMAGES_FILE (JSON or YAML). They add to the
 * default images (DEFAULT_IMAGES), and one with a default's name replaces it: a team names the images
 * it adds, and `image:debian-bookworm` works without defining the base again. Returns null when
 * neither is set (DEFAULT_IMAGES apply), the definitions, or the problems, each one line.
 */
export function loadImages(source: { json?: string; file?: string; cwd?: string }): { images: ImageDefinition[] } | { problems: string[] } | null {
  const cwd = source.cwd ?? process.cwd();
  let value: unknown;
  let origin: string;
  let baseDir: string;
  if (source.json !== undefined && source.json.trim() !== '') {
    origin = 'IMAGES';
    baseDir = cwd;
    try {
      value = JSON.parse(source.json);
    } catch (e) {
      return { problems: [`IMAGES: not valid JSON: ${(e as Error).message}`] };
    }
  } else if (source.file) {
    const file = path.resolve(cwd, source.file);
    origin = `IMAGES_FILE (${source.file})`;
    baseDir = path.dirname(file);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      return { problems: [`IMAGES_FILE: cannot read ${source.file}: ${(e as Error).message}`] };
    }
    const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true });
    if (doc.errors.length > 0) return { problems: doc.errors.slice(0, 5).map((e) => `${origin}: not valid YAML or JSON: ${e.message.split('\n')[0]}`) };
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (e) {
      return { problems: [`${origin}: ${(e as Error).message}`] };
    }
  } else return null;
  const parsed = imagesSchema(baseDir).safeParse(value);
  const given = new Set(Array.isArray(value) ? value.map((e) => (e && typeof e === 'object' ? (e as { name?: unknown }).name : null)) : []);
  const defaults = DEFAULT_IMAGES.filter((d) => !given.has(d.name));
  const cross = crossImageProblems(value, defaults.map((d) => d.name));
  if (parsed.success && cross.length === 0) return { images: [...defaults, ...parsed.data] };
  const issues = [...(parsed.success ? [] : parsed.error.issues), ...cross].sort((a, b) => Number(a.path[0] ?? -1) - Number(b.path[0] ?? -1));
  return {
    problems: issues.map((i) => {
      const at = i.path.length ? i.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('').replace(/^\./, '') : '';
      const named = typeof i.path[0] === 'number' && Array.isArray(value) ? nameAt(value, i.path[0]) : '';
      return `${origin}${at ? ` ${at}` : ''}${named}: ${i.message}`;
    }),
  };
}

function nameAt(list: unknown[], i: number): string {
  const entry = list[i] as { name?: unknown } | undefined;
  return entry && typeof entry.name === 'string' && IMAGE_NAME_RE.test(entry.name) ? ` ("${entry.name}")` : '';
}

/**
 * Problems of pools naming images: a pool's `image` (its default) and each of its `images` (the images
 * its tests may ask for; "*" allows every image) must be defined. Empty: all good.
 */
export function poolImageProblems(
  pools: readonly { name: string; image: string; images?: readonly string[] }[],
  images: readonly Pick<ImageDefinition, 'name'>[],
): string[] {
  const known = new Set(images.map((i) => i.name));
  const list = [...known].sort().join(', ');
  const problems: string[] = [];
  for (const pool of pools) {
    if (!known.has(pool.image)) problems.push(`pool "${pool.name}": image "${pool.image}" is not defined (defined: ${list}; see IMAGES)`);
    for (const name of pool.images ?? []) {
      if (name !== '*' && !known.has(name)) problems.push(`pool "${pool.name}": images lists "${name}", which is not defined (defined: ${list})`);
    }
    if (pool.images && pool.images.length > 0 && !pool.images.includes('*') && !pool.images.includes(pool.image)) {
      problems.push(`pool "${pool.name}": its default image "${pool.image}" is not in its images list`);
    }
  }
  return problems;
}

/** The chain of images `name` builds on, the base first and `name` last. */
export function imageLineage(images: readonly ImageDefinition[], name: string): ImageDefinition[] {
  const out: ImageDefinition[] = [];
  for (let next: string | null = name; next !== null; ) {
    const def = images.find((i) => i.name === next);
    if (!def) throw new Error(out.length === 0 ? `no image named "${next}" is defined` : `image "${out[0].name}" builds on "${next}", which is not defined`);
    if (out.includes(def)) throw new Error(`images build on each other in a cycle: ${[def, ...out].map((i) => i.name).join(' → ')}`);
    out.unshift(def);
    next = def.source.type === 'image' ? def.source.name : null;
  }
  return out;
}
