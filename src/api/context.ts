import type { EnvironmentView, PlanView, ResultView, TestView } from '../views/view.types';
import type { PlanService } from '../services/plan.service';
import type { StatusService } from '../services/status.service';
import type { TestService } from '../services/test.service';
import type { EnvironmentService } from '../services/environment.service';
import type { ImagesService } from '../services/images.service';
import type { ArtifactsService } from '../services/artifacts.service';
import type { RetentionService } from '../services/retention.service';
import type { BundleService } from '../services/bundle.service';
import type { UsageView } from '../views/view.types';
import { BatchLoader } from './batch-loader';
import type { LiveEvents } from './live';
import type { Caller } from '../domain/access';
import type { TokenService } from '../services/auth/token.service';
import type { FairUse } from '../services/auth/fair-use';
import type { Authenticator } from '../services/auth/authenticator';

export interface Services {
  plans: PlanService;
  tests: TestService;
  status: StatusService;
  environments: EnvironmentService;
  images: ImagesService;
  artifacts: ArtifactsService;
  retention: RetentionService;
  bundles: BundleService;
  tokens: TokenService;
  fairUse: FairUse;
  authenticator: Authenticator;
}

export interface ApiContext {
  services: Services;
  live: LiveEvents;
  /** The token of this request; null with authentication off. */
  caller: Caller | null;
  loaders: {
    result: BatchLoader<string, ResultView>;
    plan: BatchLoader<string, PlanView>;
    test: BatchLoader<string, TestView>;
    environment: BatchLoader<string, EnvironmentView>;
    utilization: BatchLoader<string, UsageView>;
  };
}

export function makeContext(services: Services, live: LiveEvents, caller: Caller | null): ApiContext {
  return {
    services,
    live,
    caller,
    loaders: {
      result: new BatchLoader((ids) => services.tests.results(ids)),
      plan: new BatchLoader((ids) => services.plans.byIds(ids)),
      test: new BatchLoader((ids) => services.tests.byIds(ids)),
      environment: new BatchLoader((ids) => services.environments.byIds(ids)),
      utilization: new BatchLoader((ids) => services.environments.utilization(ids)),
    },
  };
}
