// What the container driver checks before it serves a pool: the host's architecture, bubblewrap,
// the image, setpriv and the sandbox user's reach (when it runs as root), and that it can limit the
// disk of environments. Each failure is an Error that says what to install or change.

import { constants as fsConstants, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { EnvironmentShape } from '../driver';
import { defaultStateRoot, nearestExisting, removeDirAndMounts } from './host-files';
import { buildHint, checkImage, ensureImage, type DriverLogger } from './image';
import { findUntraversable, type SandboxUser } from './sandbox-user';
import { createWorkFs, type WorkFs } from './work-fs';

export interface PreflightContext {
  imageDir: string;
  bwrapPath: string;
  setprivPath: string;
  buildMissingImages: boolean;
  logger: DriverLogger;
  sandboxUser: SandboxUser | null;
  /** The shared state dir (the stateDir option). */
  stateBase: string;
  ensureStateRoot(): Promise<void>;
}

const ARCH_NAMES: Record<string, string[]> = { x64: ['x86_64', 'amd64', 'x64'], arm64: ['aarch64', 'arm64'] };

/** Everything but cgroups (the driver prepares them) and the disk probe. */
export async function checkHost(ctx: PreflightContext, shape: EnvironmentShape): Promise<void> {
  if (shape.kind !== 'CONTAINER') throw new Error(`ContainerDriver cannot run ${shape.kind} environments`);
  const hostNames = ARCH_NAMES[os.arch()] ?? [os.arch()];
  if (shape.arch && !hostNames.includes(shape.arch)) {
    throw new Error(`pool '${shape.pool}' wants arch ${shape.arch} but this host is ${hostNames[0]}; use the QEMU driver`);
  }
  if (!(await isExecutable(ctx.bwrapPath))) {
    throw new Error(
      `bubblewrap not found at ${ctx.bwrapPath}: install the Debian package \`bubblewrap\` (apt-get install -y bubblewrap) or set bwrapPath`,
    );
  }
  const image = await checkImage(ctx.imageDir, shape.image);
  if (!image.ok) {
    if (!ctx.buildMissingImages) throw new Error(`${image.problem}; ${buildHint(ctx.imageDir, shape.image)}`);
    await ensureImage(ctx.imageDir, shape.image, ctx.logger);
  }
  const user = ctx.sandboxUser;
  if (!user) return;
  if (!(await isExecutable(ctx.setprivPath))) {
    throw new Error(
      `setpriv not found at ${ctx.setprivPath}: a root driver needs it to start sandboxes as uid ${user.uid}; install the Debian package \`util-linux\` or set setprivPath`,
    );
  }
  // Check before creating anything: the state root, or its nearest existing parent.
  const rootfs = image.paths.rootfs;
  const bad = await findUntraversable(ctx.setprivPath, user, [rootfs, await nearestExisting(ctx.stateBase)]);
  if (bad) {
    const why = bad.blocker ? ` (${bad.blocker} denies search permission to uid ${user.uid} gid ${user.gid})` : '';
    if (bad.dir === rootfs) {
      throw new Error(
        `image rootfs ${rootfs} is not reachable by the sandbox user uid ${user.uid}${why}: bwrap runs as that user when the ` +
          'orchestrator runs as root. Keep images in a world-traversable directory (IMAGE_DIR=/var/cache/test-orchestrator/images, ' +
          'the default for root; `bash scripts/build-image.sh` builds there) or make every parent directory mode 0711 or wider',
      );
    }
    throw new Error(
      `container state dir ${ctx.stateBase} is not reachable by the sandbox user uid ${user.uid}${why}: leave stateDir unset ` +
        `(default ${defaultStateRoot()}) or point it at a directory whose parents are mode 0711 or wider`,
    );
  }
  await ctx.ensureStateRoot().catch((err: Error) => {
    throw new Error(`container state dir ${ctx.stateBase} is unusable: ${err.message}; leave stateDir unset (default ${defaultStateRoot()})`);
  });
}

/** A missing file, or one without execute permission, is the same answer: not usable. */
async function isExecutable(file: string): Promise<boolean> {
  return fs.access(file, fsConstants.X_OK).then(
    () => true,
    () => false,
  );
}

/** A small filesystem made, mounted and thrown away in `stateRoot`, or a clear error. */
export async function probeDiskLimits(stateRoot: string, logger: DriverLogger): Promise<void> {
  const dir = path.join(stateRoot, 'disk-probe');
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const probe: WorkFs = { image: path.join(dir, 'disk.img'), mountPoint: path.join(dir, 'work'), sizeMb: 16, ctlMountPoint: path.join(dir, 'run'), ctlSizeMb: 1 };
  try {
    await createWorkFs(probe);
  } finally {
    await removeDirAndMounts(dir).catch((err: Error) => logger.error({ err: err.message }, 'disk probe: cannot remove its filesystems'));
  }
}
