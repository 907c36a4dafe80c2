// The images of this worker's host: which version of each configured image runs the tests, building
// what is missing or outdated (one build at a time, in the background, progress in the log), and the
// states the API shows (reported to the database through the images service). A test whose image is
// still building waits QUEUED; one whose image failed to build ends in ERROR with the build's message.

import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { ImageDefinition } from '../config/images';
import type { ImageStatus } from '../domain/enums';
import { buildImage, imageStatus } from '../images/builder';
import { collectGarbage } from '../images/gc';
import { acquireVersion, resolveVersion, type ResolvedImage } from '../images/store';
import { bestEffort, bestEffortSync } from '../infra/best-effort';
import type { ImageReport } from '../services/images.service';
import type { ImageForRun, ImageSupply } from './image-supply';

export interface HostImagesDeps {
  imageDir: string;
  definitions: readonly ImageDefinition[];
  /** Build what is missing or outdated (BUILD_IMAGES); when off, such an image is FAILED with how to build it. */
  build: boolean;
  /** Where the states go (the images service); a failure to report is logged, never fatal. */
  report(name: string, report: ImageReport): Promise<void>;
  logger: Logger;
  /** DEBIAN_MIRROR and proxies for the builds. */
  buildEnv?: Record<string, string>;
  debianMirror?: string;
}

interface ImageState {
  status: ImageStatus;
  /** The version tests start on (READY). */
  version: ResolvedImage | null;
  /**
   * This worker's hold on `version` while it is the one its tests start on: `current` is the version
   * built last on the host by anyone (another deployment may define the image otherwise), so without
   * the hold a garbage collection (this worker's own, or another process's) removes it.
   */
  pin: (() => void) | null;
  error: string | null;
  /** Settles when the image is READY or FAILED. */
  settled: Promise<void>;
  settle(): void;
}

export class HostImages implements ImageSupply {
  private readonly states = new Map<string, ImageState>();
  private builds: Promise<void> = Promise.resolve();
  private readonly stopping = new AbortController();
  private readonly host = hostname();
  private unheldWarned = false;

  constructor(private readonly d: HostImagesDeps) {}

  /**
   * Looks at each image of `names` (in that order: a pool's default first): READY when its current
   * definition is built; else queued for a build. Returns once every image has a state (not built).
   */
  async prepare(names: readonly string[]): Promise<void> {
    for (const name of names) {
      if (this.states.has(name)) continue;
      const state = this.newState();
      this.states.set(name, state);
      if (!this.d.definitions.some((def) => def.name === name)) {
        this.fail(name, state, `no image "${name}" is configured`);
        continue;
      }
      let ready: ResolvedImage | null = null;
      try {
        ready = (await imageStatus(this.d.imageDir, this.d.definitions, name, this.buildOptions())).ready;
      } catch (err) {
        this.fail(name, state, `cannot tell whether it is up to date: ${(err as Error).message}`);
        continue;
      }
      if (ready) {
        await this.ready(name, state, ready, false);
        continue;
      }
      if (!this.d.build) {
        this.fail(name, state, `not built on ${this.host} and building is off (BUILD_IMAGES): build it with \`npm run images\``);
        continue;
      }
      state.status = 'BUILDING';
      this.report(name, { status: 'BUILDING', host: this.host });
      this.builds = this.builds.then(() => this.buildOne(name, state));
    }
    this.builds = this.builds.then(() => this.collectGarbage());
  }

  /** Settles once image `name` is READY or FAILED (after prepare). */
  async settled(name: string): Promise<ImageStatus> {
    const state = this.states.get(name);
    if (!state) return 'MISSING';
    await state.settled;
    return state.status;
  }

  status(name: string): ImageStatus {
    return this.states.get(name)?.status ?? 'MISSING';
  }

  async forRun(name: string, holder: string): Promise<ImageForRun> {
    const state = this.states.get(name);
    if (!state) return { state: 'failed', message: `image "${name}" is not offered by the pools of this worker` };
    if (state.status === 'FAILED') return { state: 'failed', message: state.error ?? 'its build failed' };
    if (state.status !== 'READY' || !state.version) return { state: 'waiting', why: `image "${name}" is being built` };
    const v = state.version;
    // held until the run ends: garbage collection (here or in another process) leaves it alone
    let release: () => void;
    try {
      release = await this.hold(name, v.digest, holder);
    } catch (err) {
      // gone from the host after all (removed by hand, or by a process that did not see our hold):
      // built again, and the test waits for it meanwhile
      this.d.logger.warn({ image: name, digest: v.digest, err: (err as Error).message }, 'the version of this image tests run on is gone: building it again');
      this.rebuild(name, state);
      return { state: 'waiting', why: `image "${name}" is being built again` };
    }
    return { state: 'ready', image: { name, digest: v.digest, rootfs: v.rootfs }, env: v.env, release };
  }

  /** Stops a build under way (its temporary directory is removed) and waits for the queue to end. */
  async stop(): Promise<void> {
    this.stopping.abort();
    await this.builds;
    for (const state of this.states.values()) this.unpin(state);
  }

  /**
   * A hold on a version: a marker in IMAGE_DIR (store.acquireVersion). Where IMAGE_DIR is not writable
   * (a worker that does not run as root and builds nothing) there is no marker: nothing it runs can
   * collect garbage there either, so the version is used as it is.
   */
  private async hold(name: string, digest: string, holder: string): Promise<() => void> {
    try {
      return await acquireVersion(this.d.imageDir, name, digest, holder);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EACCES' && code !== 'EROFS' && code !== 'EPERM') throw err;
      if (!(await resolveVersion(this.d.imageDir, name, digest))) throw err;
      if (!this.unheldWarned) this.d.logger.warn({ imageDir: this.d.imageDir, err: (err as Error).message }, 'cannot mark image versions in use (IMAGE_DIR is not writable): running on them unmarked');
      this.unheldWarned = true;
      return () => {};
    }
  }

  private unpin(state: ImageState): void {
    const pin = state.pin;
    state.pin = null;
    if (pin) bestEffortSync(this.d.logger, 'releasing the hold on an image version', pin);
  }

  private rebuild(name: string, state: ImageState): void {
    if (state.status === 'BUILDING' || this.stopping.signal.aborted) return;
    this.unpin(state);
    state.status = 'BUILDING';
    state.version = null;
    if (!this.d.build) {
      this.fail(name, state, `its version is gone from ${this.d.imageDir} and building is off (BUILD_IMAGES): build it with \`npm run images\``);
      return;
    }
    this.report(name, { status: 'BUILDING', host: this.host });
    this.builds = this.builds.then(() => this.buildOne(name, state));
  }

  private async buildOne(name: string, state: ImageState): Promise<void> {
    if (this.stopping.signal.aborted) return;
    const log = this.d.logger.child({ image: name });
    log.info('building image (its tests wait QUEUED meanwhile)');
    try {
      const built = await buildImage(this.d.imageDir, this.d.definitions, name, {
        ...this.buildOptions(),
        logger: log, // the builder logs a line per step and the tools' meaningful lines
        signal: this.stopping.signal,
      });
      await this.ready(name, state, built, true);
    } catch (err) {
      if (this.stopping.signal.aborted) return;
      this.fail(name, state, (err as Error).message.split('\n')[0]);
    }
  }

  private async ready(name: string, state: ImageState, version: ResolvedImage, built: boolean): Promise<void> {
    this.unpin(state);
    try {
      state.pin = await this.hold(name, version.digest, `worker-${this.host}`);
    } catch (err) {
      this.fail(name, state, `its version ${version.digest} vanished as it was made ready: ${(err as Error).message}`);
      return;
    }
    state.status = 'READY';
    state.version = version;
    state.error = null;
    this.d.logger.info({ image: name, digest: version.digest, built }, built ? 'image built' : 'image up to date');
    this.report(name, { status: 'READY', digest: version.digest, sizeBytes: version.sizeBytes, builtAt: new Date(version.builtAt), error: null, host: this.host });
    state.settle();
  }

  private fail(name: string, state: ImageState, message: string): void {
    state.status = 'FAILED';
    state.error = message;
    this.d.logger.error({ image: name }, `image unusable: ${message}`);
    this.report(name, { status: 'FAILED', error: message, host: this.host });
    state.settle();
  }

  private report(name: string, report: ImageReport): void {
    void bestEffort(this.d.logger, `reporting the state of image ${name}`, () => this.d.report(name, report));
  }

  private async collectGarbage(): Promise<void> {
    if (this.stopping.signal.aborted) return;
    await bestEffort(this.d.logger, 'removing image versions nothing uses', async () => {
      const gc = await collectGarbage(this.d.imageDir, this.d.definitions, { logger: this.d.logger });
      this.d.logger.info({ gc }, 'image garbage collected');
    });
  }

  private buildOptions() {
    return { debianMirror: this.d.debianMirror, env: this.d.buildEnv };
  }

  private newState(): ImageState {
    let settle!: () => void;
    const settled = new Promise<void>((resolve) => (settle = resolve));
    return { status: 'MISSING', version: null, pin: null, error: null, settled, settle };
  }
}

/**
 * The images the tests of `pools` may run in, in the order to prepare them: every pool's default
 * first, then the images the pools allow ("*": every configured one).
 */
export function imagesOfPools(pools: readonly { image: string; images?: readonly string[] }[], definitions: readonly { name: string }[]): string[] {
  const names = new Set(pools.map((p) => p.image));
  for (const p of pools) {
    for (const allowed of p.images ?? ['*']) {
      if (allowed === '*') for (const d of definitions) names.add(d.name);
      else names.add(allowed);
    }
  }
  return [...names];
}
