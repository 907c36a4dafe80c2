// What the executor asks before a run: the version of the test's image to run in now, or that it must
// wait (the image is being built on this host), or that it cannot run (the build failed). A version
// handed out is held until released, so that garbage collection never removes it under a running test.

import type { RunImage } from '../environments/driver';

export type ImageForRun =
  | { state: 'ready'; image: RunImage; env: Record<string, string>; release(): void }
  | { state: 'waiting'; why: string }
  | { state: 'failed'; message: string };

export interface ImageSupply {
  /** The version of image `name` a run of test `holder` uses now. */
  forRun(name: string, holder: string): Promise<ImageForRun>;
}
