// Building images: parents first, what is up to date skipped, one builder per image name across
// processes (a lock; a second builder waits and then finds it built), each version built in a
// directory beside its place and renamed into place whole, so a half-built image is never seen.
//
// Steps of one version: the source (debootstrap | a copy of the parent | skopeo copy + umoci unpack),
// the packages (apt-get in the build sandbox), the setup script (/bin/sh -e in the build sandbox),
// then finish: bind targets, sanitize, /bin/sh checked, size, image.json. A failing step throws an
// ImageBuildError whose message is one line naming the step and what the tool said; its build
// directory is removed and the current version is left as it was.

import { mkdirSync, chmodSync, promises as fs, statSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { imageLineage, type ImageDefinition } from '../config/images';
import { bestEffort } from '../infra/best-effort';
import { processStartTime } from '../infra/process-utils';
import { acquireBuildLock } from './build-lock';
import { BUILD_PATH, SETUP_PATH, aptLineMatters, packagesScript, runInBuildSandbox } from './build-sandbox';
import { BUILD_FORMAT, computeDigests, type SourceIdentity } from './digest';
import { buildDirName } from './gc';
import { hostDebianMirror } from './mirror';
import { cleanAptCaches, debianVersionOf, ensureBindTargets, isExecutableInRoot, prepareResolvConf, sanitize } from './rootfs';
import { copyRootfs, debootstrap, importOci, type StepContext } from './source-steps';
import { LOCK_FILE, currentHex, hexOf, legacyImage, nameDir, resolveVersion, setCurrent, type ImageManifest, type ResolvedImage } from './store';
import { ImageBuildError, findTool, runStep, TOOL_PACKAGES, type ImageLogger } from './tool';

export type BuildStep = 'debootstrap' | 'adopt' | 'copy' | 'import' | 'unpack' | 'packages' | 'setup' | 'finish';

export interface BuildProgress {
  image: string;
  /** A step, or "wait" (another process builds it), "skip" (up to date), "done". */
  step: BuildStep | 'wait' | 'skip' | 'done';
  message: string;
  /** True for a line of a tool's own output (apt, debootstrap); false for the builder's step lines. */
  toolLine: boolean;
}

export interface BuildOptions {
  logger: ImageLogger;
  /** Aborting kills the running tool; the build directory is removed. */
  signal?: AbortSignal;
  onProgress?(p: BuildProgress): void;
  /** DEBIAN_MIRROR; default: the first archive of the host's apt sources. */
  debianMirror?: string;
  /** Extra variables for the tools and the build sandbox (http_proxy, https_proxy, no_proxy). */
  env?: Record<string, string>;
  /** Where the host's apt sources are (tests); default /etc/apt. */
  aptDir?: string;
}

/** A version of the image ready to use; `built`: this call built it (false: it was there). */
export interface BuiltImage extends ResolvedImage {
  built: boolean;
}

interface Plan {
  def: ImageDefinition;
  digest: string;
  source: SourceIdentity;
}

/** The mirror debian:SUITE images come from on this host (part of their digest). */
export function debianMirrorFor(opts: Pick<BuildOptions, 'debianMirror' | 'aptDir'>): string {
  return opts.debianMirror ?? hostDebianMirror(opts.aptDir);
}

function hostEnv(extra: Record<string, string> | undefined): Record<string, string> {
  return { PATH: BUILD_PATH, LANG: 'C.UTF-8', HOME: '/root', DEBIAN_FRONTEND: 'noninteractive', ...(extra ?? {}) };
}

/** The digest `name` would have now and its current complete version of that digest, if any (no build). */
export async function imageStatus(
  imageDir: string,
  defs: readonly ImageDefinition[],
  name: string,
  opts: Pick<BuildOptions, 'debianMirror' | 'aptDir' | 'env' | 'signal'> = {},
): Promise<{ digest: string; ready: ResolvedImage | null }> {
  const digests = await computeDigests(defs, { mirror: debianMirrorFor(opts), skopeo: 'skopeo', env: hostEnv(opts.env), signal: opts.signal }, [name]);
  const digest = digests.get(name)!.digest;
  return { digest, ready: await resolveVersion(imageDir, name, digest) };
}

/**
 * Builds `name` (and the images it builds on, first) unless up to date, makes it current and returns
 * it. Needs root when something must be built.
 */
export async function buildImage(imageDir: string, defs: readonly ImageDefinition[], name: string, opts: BuildOptions): Promise<BuiltImage> {
  const lineage = imageLineage(defs, name);
  const env = hostEnv(opts.env);
  const digests = await computeDigests(defs, { mirror: debianMirrorFor(opts), skopeo: (await findTool('skopeo', env.PATH)) ?? 'skopeo', env, signal: opts.signal }, [name]);
  let parent: ResolvedImage | null = null;
  let last: BuiltImage | null = null;
  for (const def of lineage) {
    const { digest, source } = digests.get(def.name)!;
    last = await buildVersion(imageDir, { def, digest, source }, parent, opts);
    parent = last;
  }
  return last!;
}

async function buildVersion(imageDir: string, plan: Plan, parent: ResolvedImage | null, opts: BuildOptions): Promise<BuiltImage> {
  const { def, digest } = plan;
  const progress = (step: BuildProgress['step'], message: string, toolLine = false) => {
    opts.logger.info({ image: def.name, step, toolLine }, toolLine ? message : `${def.name}: ${message}`);
    opts.onProgress?.({ image: def.name, step, message, toolLine });
  };
  const found = await resolveVersion(imageDir, def.name, digest);
  const isCurrent = found !== null && (await currentHex(imageDir, def.name)) === hexOf(digest);
  if (found && (isCurrent || process.getuid?.() !== 0)) {
    // (not root: the cache is not ours to change; the version is used as it is)
    progress('skip', `up to date (${digest.slice(0, 19)})`);
    return { ...found, built: false };
  }
  if (process.getuid?.() !== 0) throw new ImageBuildError(def.name, 'build', 'building an image needs root (debootstrap, umoci, the build sandbox): run `sudo npm run images`');
  const dir = nameDir(imageDir, def.name);
  mkdir755(dir);
  const lock = await acquireBuildLock(path.join(dir, LOCK_FILE), {
    signal: opts.signal,
    onWait: (h) => progress('wait', `waiting for pid ${h.pid}, which is building it`),
  });
  try {
    // Under the lock (a collection holds it too): made current here, it cannot be collected meanwhile.
    const ready = await resolveVersion(imageDir, def.name, digest);
    if (ready) {
      if ((await currentHex(imageDir, def.name)) !== hexOf(digest)) await setCurrent(imageDir, def.name, digest);
      progress('skip', found ? `up to date (${digest.slice(0, 19)}), made current again` : `built meanwhile by another process (${digest.slice(0, 19)})`);
      return { ...ready, built: false };
    }
    return await buildInto(imageDir, dir, plan, parent, opts, progress);
  } finally {
    lock.release();
  }
}

async function buildInto(
  imageDir: string,
  dir: string,
  plan: Plan,
  parent: ResolvedImage | null,
  opts: BuildOptions,
  progress: (step: BuildProgress['step'], message: string, toolLine?: boolean) => void,
): Promise<BuiltImage> {
  const { def, digest, source } = plan;
  const started = performance.now();
  const tmp = path.join(dir, buildDirName(hexOf(digest), processStartTime('self')));
  mkdir755(tmp);
  const env = hostEnv(opts.env);
  const tool = async (t: string) => {
    const found = await findTool(t, env.PATH);
    if (!found) throw new ImageBuildError(def.name, t, `${t} not found: install the Debian package ${TOOL_PACKAGES[t] ?? t}`);
    return found;
  };
  const ctx: StepContext = {
    image: def.name,
    tmp,
    hostEnv: env,
    tools: { debootstrap: 'debootstrap', skopeo: 'skopeo', umoci: 'umoci', cp: 'cp' },
    signal: opts.signal,
    line: (step, text) => progress(step as BuildStep, text, true),
  };
  const rootfs = path.join(tmp, 'rootfs');
  try {
    let baseEnv: Record<string, string> = {};
    const timed = async (step: BuildStep, what: string, fn: () => Promise<void>) => {
      progress(step, what);
      const t0 = performance.now();
      await fn();
      progress(step, `${step} done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    };
    if (source.type === 'debian') {
      const legacy = def.packages.length === 0 && !def.setup ? await legacyImage(imageDir, def.name) : null;
      const m = legacy?.manifest;
      if (legacy && m?.distribution === 'debian' && m.suite === source.suite && (m.variant ?? 'minbase') === source.variant && m.mirror === source.mirror) {
        await timed('adopt', `taking over the image of the first layout at ${legacy.rootfs} (same suite, variant and mirror; hard links)`, () => copyRootfs(ctx, legacy.rootfs, 'adopt', true));
      } else {
        ctx.tools.debootstrap = await tool('debootstrap');
        await timed('debootstrap', `debootstrap --variant=${source.variant} ${source.suite} from ${source.mirror}`, async () => {
          await debootstrap(ctx, source.suite, source.variant, source.mirror);
          await cleanAptCaches(rootfs); // of no use in a read-only root
        });
      }
    } else if (source.type === 'image') {
      if (!parent) throw new Error(`buildImage: the parent of ${def.name} was not built first`);
      baseEnv = parent.env;
      await timed('copy', `copying ${parent.name} (${parent.digest.slice(0, 19)})`, () => copyRootfs(ctx, parent.rootfs, 'copy'));
    } else {
      ctx.tools.skopeo = await tool('skopeo');
      ctx.tools.umoci = await tool('umoci');
      await timed('import', `importing ${def.from} (skopeo copy, umoci unpack)`, async () => {
        baseEnv = await importOci(ctx, def);
      });
    }
    await ensureBindTargets(rootfs);

    if (def.packages.length > 0 || def.setup) {
      const bwrap = await tool('bwrap');
      const restoreResolv = await prepareResolvConf(rootfs).catch((err: Error) => {
        throw new ImageBuildError(def.name, def.packages.length > 0 ? 'packages' : 'setup', err.message);
      });
      try {
        const sandbox = { bwrap, rootfs, hostEnv: env, env: opts.env, signal: opts.signal };
        if (def.packages.length > 0) {
          if (!(await isExecutableInRoot(rootfs, '/bin/sh'))) throw new ImageBuildError(def.name, 'packages', 'the image has no /bin/sh to run apt-get with');
          if (!(await isExecutableInRoot(rootfs, '/usr/bin/apt-get'))) throw new ImageBuildError(def.name, 'packages', `packages need apt-get, which ${def.from} does not have (not a Debian-based image)`);
          await timed('packages', `apt-get install ${def.packages.join(' ')}`, async () => {
            await runInBuildSandbox(def.name, 'packages', {
              ...sandbox,
              command: ['/bin/sh', '-c', packagesScript(def.packages)],
              label: 'apt-get',
              onLine: (l) => aptLineMatters(l) && progress('packages', l, true),
            });
          });
        }
        if (def.setup) {
          if (!(await isExecutableInRoot(rootfs, '/bin/sh'))) throw new ImageBuildError(def.name, 'setup', 'the image has no /bin/sh to run the setup script with');
          const setupFile = path.join(tmp, 'setup.sh');
          await fs.writeFile(setupFile, def.setup, { mode: 0o600 });
          await timed('setup', 'running the setup script (/bin/sh -e)', async () => {
            await runInBuildSandbox(def.name, 'setup', { ...sandbox, setupFile, command: ['/bin/sh', '-e', SETUP_PATH], label: 'setup script', onLine: (l) => progress('setup', l, true) });
          });
          await fs.rm(setupFile, { force: true });
        }
      } finally {
        await restoreResolv();
      }
    }

    progress('finish', 'checking and sealing the root filesystem');
    const cleaned = await sanitize(rootfs);
    await ensureBindTargets(rootfs); // again: a setup script may have changed them (and /tmp is 1777)
    if (cleaned.devices + cleaned.setuid + cleaned.worldWritable > 0) {
      progress('finish', `removed ${cleaned.devices} device nodes, set-ID bits of ${cleaned.setuid} files, write permission for others on ${cleaned.worldWritable} entries (none works in a sandbox; all would on the host)`);
    }
    if (!(await isExecutableInRoot(rootfs, '/bin/sh'))) throw new ImageBuildError(def.name, 'finish', 'the image has no executable /bin/sh (sandboxes run their scripts with it)');
    const du = await runStep(def.name, 'finish', { command: 'du', args: ['-s', '-x', '-B1', rootfs], env });
    const sizeBytes = Number(du.stdout.split(/\s/)[0]) || 0;
    const manifest: ImageManifest = {
      name: def.name,
      digest,
      from: def.from,
      source,
      packages: def.packages,
      setup: def.setup ?? null,
      env: { ...baseEnv, ...def.env },
      sizeBytes,
      builtAt: new Date().toISOString(),
      buildSeconds: Math.round((performance.now() - started) / 100) / 10,
      format: BUILD_FORMAT,
      debianVersion: await debianVersionOf(rootfs),
    };
    const manifestFile = path.join(tmp, 'image.json');
    await fs.writeFile(manifestFile, `${JSON.stringify(manifest, null, 2)}\n`, { flag: 'wx' });
    await fs.chmod(manifestFile, 0o644);
    await fs.rename(tmp, path.join(dir, hexOf(digest)));
    await setCurrent(imageDir, def.name, digest);
    progress('done', `ready: ${digest.slice(0, 19)}, ${(sizeBytes / 1024 / 1024).toFixed(0)} MB, built in ${manifest.buildSeconds} s`);
    const resolved = await resolveVersion(imageDir, def.name, digest);
    if (!resolved) throw new Error(`image "${def.name}": version ${digest} vanished right after its build`);
    return { ...resolved, built: true };
  } catch (err) {
    await bestEffort(opts.logger, `removing the build directory ${tmp}`, () => fs.rm(tmp, { recursive: true, force: true }));
    if (err instanceof ImageBuildError || opts.signal?.aborted) throw err;
    throw new ImageBuildError(def.name, 'build', (err as Error).message);
  }
}

/** mkdir -p with 0755 for every directory made (whatever the process umask): the sandbox user traverses them. */
export function mkdir755(dir: string): void {
  const missing: string[] = [];
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    try {
      if (!statSync(d).isDirectory()) throw new Error(`${d} is not a directory`);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      missing.unshift(d);
      if (path.dirname(d) === d) break;
    }
  }
  for (const d of missing) {
    try {
      mkdirSync(d);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err; // made by another process meanwhile
      continue;
    }
    chmodSync(d, 0o755);
  }
}
