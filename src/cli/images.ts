// `orchestrator images [NAME...]` (npm run images): builds every configured image, or the named ones,
// printing progress; what is up to date is skipped; then versions nothing uses are removed. As root it
// also creates the system user sandboxes run as (orch-sandbox), and warns when that user cannot reach
// the image cache. Exit 0: every image ready; 1: a build failed (the others are still built);
// 2: a usage problem (an image that is not defined).

import { readFileSync } from 'node:fs';
import type { Config } from '../config/config';
import { findUntraversable } from '../environments/container/sandbox-user';
import { buildImage, mkdir755 } from '../images/builder';
import { collectGarbage } from '../images/gc';
import { ensureVmImage } from '../images/vm-image';
import { runTool, oneLine, type ImageLogger } from '../images/tool';
import { bestEffort } from '../infra/best-effort';
import type { CommandSpec } from './args';

export const IMAGES_COMMAND: CommandSpec = {
  name: 'images',
  positionals: [{ name: 'NAME...', required: false, help: 'the images to build (default: every one configured in IMAGES / IMAGES_FILE)' }],
  summary: 'Builds the configured environment images into IMAGE_DIR (what is up to date is skipped), then removes versions nothing uses.',
  description: [
    'An image is built once per machine: debootstrap of a Debian suite, a copy of another image, or an',
    'OCI/Docker image copied with skopeo and unpacked with umoci; then its packages (apt-get) and its setup',
    'script, in a build sandbox that has the network. Images it builds on are built first. Needs root to',
    'build (debootstrap, umoci, the build sandbox); as root it also creates the system user orch-sandbox.',
  ].join('\n'),
  options: [],
  sections: [
    [
      'exit codes:',
      '  0  every image is ready',
      '  1  a build failed (its step and the tool\'s message are printed; the other images are still built)',
      '  2  a usage problem: an image that is not configured, or an invalid configuration',
    ].join('\n'),
  ],
};

export interface Output {
  out(line: string): void;
  err(line: string): void;
}

const SANDBOX_USER = 'orch-sandbox';

function passwdHas(user: string): boolean {
  try {
    return readFileSync('/etc/passwd', 'utf8').split('\n').some((l) => l.split(':')[0] === user);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false; // no passwd file: no such user
    throw err;
  }
}

/** The user sandboxes run as by default (SANDBOX_USER's default), a system user of its own. */
async function ensureSandboxUser(io: Output, log: ImageLogger): Promise<void> {
  if (passwdHas(SANDBOX_USER)) return;
  const r = await bestEffort(log, 'creating the system user orch-sandbox', () =>
    runTool({
      command: 'useradd',
      args: ['--system', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', '--user-group', SANDBOX_USER],
      env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' },
    }),
  );
  if (r?.code === 0) io.out(`[images] created the system user ${SANDBOX_USER} (sandboxes run as it)`);
  else io.out(`[images] could not create the system user ${SANDBOX_USER} (${r ? oneLine(r.tail.join(' ') || `useradd exit ${r.code}`) : 'useradd failed'}): sandboxes will run as nobody (65534)`);
}

export async function imagesCommand(config: Config, names: readonly string[], io: Output, signal?: AbortSignal): Promise<number> {
  const defined = config.images.map((i) => i.name);
  const unknown = names.filter((n) => !defined.includes(n));
  if (unknown.length > 0) {
    io.err(`images: not configured: ${unknown.join(', ')} (configured: ${defined.join(', ')}; see IMAGES / IMAGES_FILE)`);
    return 2;
  }
  const log: ImageLogger = {
    info: (_obj, msg) => io.out(`[images] ${msg}`),
    warn: (obj, msg) => io.out(`[images] warning: ${msg}${'err' in obj ? `: ${String((obj as { err: unknown }).err)}` : ''}`),
    error: (_obj, msg) => io.err(`[images] ${msg}`),
  };
  const root = process.getuid?.() === 0;
  if (root) {
    await ensureSandboxUser(io, log);
    mkdir755(config.imageDir);
  }
  const wanted = names.length > 0 ? [...new Set(names)] : defined;
  const failed: string[] = [];
  const rootfsDirs: string[] = [];
  for (const name of wanted) {
    if (signal?.aborted) break;
    try {
      const image = await buildImage(config.imageDir, config.images, name, {
        logger: {
          info: (obj, msg) => {
            const o = obj as { image?: string; toolLine?: boolean };
            io.out(o.toolLine ? `[images]   ${o.image} | ${msg}` : `[images] ${msg}`);
          },
          warn: log.warn,
          error: log.error,
        },
        signal,
        debianMirror: config.imageBuild.debianMirror,
        env: config.imageBuild.proxyEnv,
      });
      rootfsDirs.push(image.rootfs);
      io.out(`[images] ${name}: ${image.built ? 'built' : 'up to date'} ${image.digest} (${(image.sizeBytes / 1024 / 1024).toFixed(0)} MB) at ${image.rootfs}`);
      // the VM form (disk, kernel, initramfs) of an image a QEMU pool boots
      if (config.pools.some((p) => p.kind === 'QEMU' && p.image === name)) {
        const vm = await ensureVmImage(config.imageDir, image.rootfs, { info: (_obj, msg) => io.out(`[images] ${name}: ${msg}`) });
        io.out(`[images] ${name}: VM image ${vm.built ? 'built' : 'up to date'} (kernel ${vm.kernelRelease}) at ${vm.dir}`);
      }
    } catch (err) {
      failed.push(name);
      io.err(`[images] ${oneLine((err as Error).message)}`);
    }
  }

  // The sandbox user (when the orchestrator runs as root) must reach the images: warn early.
  const setpriv = config.drivers.CONTAINER?.setprivPath;
  if (root && setpriv && rootfsDirs.length > 0) {
    const bad = await bestEffort(log, 'checking that the sandbox user reaches the images', () =>
      findUntraversable(setpriv, { uid: config.sandboxUser.uid, gid: config.sandboxUser.gid }, rootfsDirs),
    );
    if (bad) {
      io.out(`[images] WARNING: ${bad.dir} is not reachable by the sandbox user uid ${config.sandboxUser.uid}${bad.blocker ? ` (${bad.blocker} denies it)` : ''}:`);
      io.out('[images] a root orchestrator cannot use these images; prefer IMAGE_DIR=/var/cache/test-orchestrator/images');
    }
  }

  if (root && !signal?.aborted) {
    const gc = await bestEffort(log, 'removing image versions nothing uses', () => collectGarbage(config.imageDir, config.images, { logger: log }));
    for (const r of gc?.removed ?? []) io.out(`[images] removed ${r}`);
    for (const s of gc?.skipped ?? []) io.out(`[images] not collected now: ${s}`);
  }
  if (failed.length > 0) {
    io.err(`[images] failed: ${failed.join(', ')}`);
    return 1;
  }
  return 0;
}
