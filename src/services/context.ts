import type { Logger } from 'pino';
import type { Config } from '../config/config';
import type { ArtifactsRepository } from '../db/artifacts.repository';
import type { ArtifactStore } from '../infra/artifact-store';
import type { ArtifactUsage } from '../infra/artifact-usage';
import type { BundlesRepository } from '../db/bundles.repository';
import type { EnvironmentsRepository } from '../db/environments.repository';
import type { ImagesRepository } from '../db/images.repository';
import type { PlansRepository } from '../db/plans.repository';
import type { RunsRepository } from '../db/runs.repository';
import type { StatusRepository } from '../db/status.repository';
import type { TestsRepository } from '../db/tests.repository';
import type { EventBus } from '../events/bus';
import type { UsageStore } from '../events/usage-store';
import type { BundleStore } from '../infra/bundle/bundle-store';
import type { TestQueues } from '../queue/producer';
import type { TokensRepository } from '../db/tokens.repository';
import type { FairUse } from './auth/fair-use';

/** What the use cases need, passed in explicitly. */
export interface ServiceDeps {
  config: Config;
  logger: Logger;
  plans: PlansRepository;
  tests: TestsRepository;
  status: StatusRepository;
  runs: RunsRepository;
  environments: EnvironmentsRepository;
  images: ImagesRepository;
  bundles: BundlesRepository;
  /** Where uploaded bundles are unpacked (BUNDLE_DIR). */
  bundleStore: BundleStore;
  queues: TestQueues;
  events: EventBus;
  usage: UsageStore;
  artifacts: ArtifactsRepository;
  /** The artifact store (ARTIFACT_DIR), counting its size in `storeUsage`. */
  store: ArtifactStore;
  storeUsage: ArtifactUsage;
  /** API tokens (AUTH=on): who submitted a plan, who may change it. */
  tokens: TokensRepository;
  /** The per-token limits (they let everything through when there is no caller: AUTH=off). */
  fairUse: FairUse;
  /** Health probes of the components. */
  pingDatabase(): Promise<void>;
  now(): Date;
}
