// Base images of the container driver: IMAGE_DIR/<name>/{rootfs/,image.json}, built by
// scripts/build-image.sh (Debian bookworm minbase via debootstrap).

import { spawn } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';

export interface DriverLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export const DEFAULT_IMAGE = 'debian-bookworm';
const IMAGE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export interface ImagePaths {
  dir: string;
  rootfs: string;
  manifest: string;
}

export function imagePaths(imageDir: string, name: string): ImagePaths {
  if (!IMAGE_NAME.test(name)) throw new Error(`invalid image name '${name}'`);
  const dir = path.join(imageDir, name);
  return { dir, rootfs: path.join(dir, 'rootfs'), manifest: path.join(dir, 'image.json') };
}

export type ImageState = { ok: true; paths: ImagePaths } | { ok: false; paths: ImagePaths; problem: string };

/** Checks the image is complete: a manifest, a root with /bin/sh and the /work bind target. */
export async function checkImage(imageDir: string, name: string): Promise<ImageState> {
  const paths = imagePaths(imageDir, name);
  try {
    await fs.access(paths.manifest);
  } catch {
    return { ok: false, paths, problem: `image '${name}' is missing (no ${paths.manifest})` };
  }
  for (const p of ['bin/sh', 'work']) {
    try {
      await fs.stat(path.join(paths.rootfs, p));
    } catch {
      return { ok: false, paths, problem: `image '${name}' is corrupt: ${path.join(paths.rootfs, p)} is missing` };
    }
  }
  return { ok: true, paths };
}

/** How to build an image, for error messages. */
export function buildHint(imageDir: string, name: string): string {
  return `build it with \`npm run images\` or \`bash scripts/build-image.sh ${imageDir} ${name}\` (needs root and the Debian package debootstrap)`;
}

/** Finds scripts/build-image.sh above this file (works from src/ and from dist/src/). */
export function findBuildScript(from: string = __dirname): string | null {
  let dir = from;
  for (let i = 0; i < 8; i++) {
    const candidate = path.join(dir, 'scripts', 'build-image.sh');
    if (existsSync(candidate)) return candidate;
    const up = path.dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return null;
}

const building = new Map<string, Promise<ImagePaths>>();

/**
 * Makes sure the image exists, building it when missing (~1m40s the first time), and logs every
 * progress line of the build. Concurrent callers in this process share one build; the script
 * itself takes a lock against other processes.
 */
export async function ensureImage(
  imageDir: string,
  name: string,
  logger: DriverLogger,
  options: { scriptPath?: string } = {},
): Promise<ImagePaths> {
  const state = await checkImage(imageDir, name);
  if (state.ok) return state.paths;
  const key = path.join(imageDir, name);
  let job = building.get(key);
  if (!job) {
    job = buildImage(imageDir, name, logger, options.scriptPath, state.problem).finally(() => building.delete(key));
    building.set(key, job);
  }
  return job;
}

async function buildImage(
  imageDir: string,
  name: string,
  logger: DriverLogger,
  scriptPath: string | undefined,
  problem: string,
): Promise<ImagePaths> {
  const script = scriptPath ?? findBuildScript();
  if (!script) throw new Error(`${problem}; scripts/build-image.sh not found to build it`);
  logger.info({ image: name, imageDir, script }, `${problem}: building it now (takes about two minutes)`);
  const child = spawn('bash', [script, imageDir, name], { stdio: ['ignore', 'pipe', 'pipe'] });
  const tail: string[] = [];
  const onLine = (stream: string) => (line: string) => {
    tail.push(line);
    if (tail.length > 20) tail.shift();
    logger.info({ image: name, stream }, line);
  };
  createInterface({ input: child.stdout }).on('line', onLine('stdout'));
  createInterface({ input: child.stderr }).on('line', onLine('stderr'));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (c) => resolve(c));
  });
  if (code !== 0) {
    logger.error({ image: name, code }, 'image build failed');
    throw new Error(`building image '${name}' failed (exit ${code}): ${tail.slice(-5).join(' | ')}`);
  }
  const after = await checkImage(imageDir, name);
  if (!after.ok) throw new Error(`image build finished but ${after.problem}`);
  logger.info({ image: name, rootfs: after.paths.rootfs }, 'image ready');
  return after.paths;
}
