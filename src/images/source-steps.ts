// The first step of a build: a root filesystem at TMP/rootfs from the image's source — debootstrap of a
// Debian suite, a copy of the parent image, or an OCI/Docker image copied with skopeo into an OCI
// layout and unpacked layer by layer (whiteouts applied) with umoci, as root so ownership is kept.

import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import type { ImageDefinition } from '../config/images';
import { skopeoReference } from './digest';
import { ImageBuildError, runStep } from './tool';

export interface StepContext {
  image: string;
  /** The build directory (TMP): the root filesystem goes to TMP/rootfs. */
  tmp: string;
  hostEnv: Record<string, string>;
  tools: { debootstrap: string; skopeo: string; umoci: string; cp: string };
  signal?: AbortSignal;
  /** A meaningful line of a tool, for the log. */
  line(step: string, text: string): void;
}

/** debootstrap's lines that are one per package: not logged. */
const DEBOOTSTRAP_CHATTER = /^I: (Retrieving|Validating|Extracting|Unpacking|Configuring) (?!Release)/;

export async function debootstrap(ctx: StepContext, suite: string, variant: string, mirror: string): Promise<void> {
  await runStep(ctx.image, 'debootstrap', {
    command: ctx.tools.debootstrap,
    args: [`--variant=${variant}`, suite, path.join(ctx.tmp, 'rootfs'), mirror],
    env: ctx.hostEnv,
    signal: ctx.signal,
    onLine: (l) => {
      if (!DEBOOTSTRAP_CHATTER.test(l) && l.trim() !== '') ctx.line('debootstrap', l);
    },
  });
}

/** A copy of `from` (a parent's root filesystem, complete and immutable): reflinks where the filesystem has them. */
export async function copyRootfs(ctx: StepContext, from: string, step: string, hardLinks = false): Promise<void> {
  await runStep(ctx.image, step, {
    command: ctx.tools.cp,
    args: [hardLinks ? '-al' : '-a', ...(hardLinks ? [] : ['--reflink=auto']), '--no-target-directory', from, path.join(ctx.tmp, 'rootfs')],
    env: ctx.hostEnv,
    signal: ctx.signal,
    onLine: (l) => ctx.line(step, l),
  });
}

/**
 * skopeo copy SRC oci:TMP/layout:img, then umoci unpack into TMP/bundle; the bundle's rootfs becomes
 * TMP/rootfs. Returns the image config's Env (NAME=value entries), read from the layout.
 */
export async function importOci(ctx: StepContext, def: ImageDefinition): Promise<Record<string, string>> {
  const s = def.source;
  if (s.type === 'debian' || s.type === 'image') throw new Error(`importOci: ${def.from} is not an OCI source`);
  if ((s.type === 'oci' || s.type === 'oci-archive' || s.type === 'docker-archive') && !existsSync(s.path)) {
    throw new ImageBuildError(ctx.image, 'import', `${s.path} does not exist`);
  }
  const layout = path.join(ctx.tmp, 'layout');
  const bundle = path.join(ctx.tmp, 'bundle');
  const policy = existsSync('/etc/containers/policy.json') ? [] : ['--insecure-policy']; // no policy installed: accept, as its default does
  await runStep(ctx.image, 'import', {
    command: ctx.tools.skopeo,
    args: [...policy, 'copy', '--quiet', skopeoReference(s), `oci:${layout}:img`],
    env: { ...ctx.hostEnv, TMPDIR: ctx.tmp },
    signal: ctx.signal,
    onLine: (l) => ctx.line('import', l),
  });
  const env = await ociConfigEnv(layout, 'img');
  await runStep(ctx.image, 'unpack', {
    command: ctx.tools.umoci,
    args: ['unpack', '--image', `${layout}:img`, bundle],
    env: ctx.hostEnv,
    signal: ctx.signal,
    onLine: (l) => ctx.line('unpack', l),
  });
  await fs.rename(path.join(bundle, 'rootfs'), path.join(ctx.tmp, 'rootfs'));
  await fs.rm(bundle, { recursive: true, force: true });
  await fs.rm(layout, { recursive: true, force: true });
  return env;
}

const BLOB = (layout: string, digest: string) => {
  const m = /^sha256:([0-9a-f]{64})$/.exec(digest);
  if (!m) throw new Error(`not a sha256 digest: ${digest}`);
  return path.join(layout, 'blobs', 'sha256', m[1]);
};

/** The Env of the image tagged `tag` in an OCI layout (index → manifest → config). */
export async function ociConfigEnv(layout: string, tag: string): Promise<Record<string, string>> {
  const readJson = async (p: string) => JSON.parse(await fs.readFile(p, 'utf8')) as Record<string, unknown>;
  const index = await readJson(path.join(layout, 'index.json'));
  const entry = (index.manifests as { digest: string; annotations?: Record<string, string> }[] | undefined)?.find(
    (m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag,
  );
  if (!entry) throw new Error(`the OCI layout ${layout} has no image "${tag}"`);
  const manifest = await readJson(BLOB(layout, entry.digest));
  const configDigest = (manifest.config as { digest?: string } | undefined)?.digest;
  if (!configDigest) return {};
  const config = await readJson(BLOB(layout, configDigest));
  const list = (config.config as { Env?: unknown } | undefined)?.Env;
  const env: Record<string, string> = {};
  if (Array.isArray(list)) {
    for (const item of list) {
      if (typeof item !== 'string') continue;
      const eq = item.indexOf('=');
      const name = eq === -1 ? item : item.slice(0, eq);
      if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) && !item.includes('\0')) env[name] = eq === -1 ? '' : item.slice(eq + 1);
    }
  }
  return env;
}
