import type { PoolDefinition } from '../config/pools';
import { TERMINAL_STATUSES, totalOf, type StatusCounts } from '../domain/status';
import type { ServiceDeps } from './context';
import { bestEffort } from '../infra/best-effort';
import { ImagesService } from './images.service';
import { ArtifactsService } from './artifacts.service';

export interface ComponentHealth {
  name: string;
  healthy: boolean;
  detail: string | null;
}

export interface PoolStatusView {
  name: string;
  kind: PoolDefinition['kind'];
  ready: number;
  busy: number;
  unhealthy: number;
  capacity: number;
  queuedTests: number;
  testTypes: PoolDefinition['testTypes'];
}

export interface SystemStatusView {
  activeTests: number;
  queuedTests: number;
  completedTests: number;
  counts: StatusCounts & { total: number };
  pools: PoolStatusView[];
  workers: number;
  healthy: boolean;
  components: ComponentHealth[];
}

async function probe(name: string, fn: () => Promise<string | null>, timeoutMs = 2_000): Promise<ComponentHealth> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const detail = await Promise.race([
      fn(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    return { name, healthy: true, detail };
  } catch (e) {
    return { name, healthy: false, detail: (e as Error).message };
  } finally {
    clearTimeout(timer);
  }
}

export class StatusService {
  private readonly images: ImagesService;
  private readonly artifacts: ArtifactsService;

  constructor(private readonly d: ServiceDeps) {
    this.images = new ImagesService(d);
    this.artifacts = new ArtifactsService(d);
  }

  /** Live counts from the counter tables, pools, workers and the health of each component. */
  async systemStatus(): Promise<SystemStatusView> {
    const { config } = this.d;
    const since = new Date(this.d.now().getTime() - config.workerHeartbeatMs * 3);
    const [counts, envs, workers, database, queue, images, artifacts] = await Promise.all([
      // shown as unknown (the database component says why) rather than failing the whole status
      bestEffort(this.d.logger, 'reading the test counts for systemStatus', () => this.d.status.testCounts(), null).then((c) => c ?? null),
      bestEffort(this.d.logger, 'reading the environment counts for systemStatus', () => this.d.status.environmentCounts(), null).then((c) => c ?? null),
      bestEffort(this.d.logger, 'reading the live workers for systemStatus', () => this.d.status.liveWorkers(since), null).then((w) => w ?? null),
      probe('database', async () => {
        await this.d.pingDatabase();
        return null;
      }),
      probe('queue', async () => {
        await this.d.queues.ping();
        return null;
      }),
      this.images.health().catch((err: Error): ComponentHealth => ({ name: 'images', healthy: false, detail: `unknown: ${err.message}` })),
      // whether the store can be used, and its size (a running total: never a walk of the store here)
      probe('artifacts', async () => {
        const h = await this.artifacts.health();
        if (!h.healthy) throw new Error(h.detail ?? 'unusable');
        return h.detail;
      }),
    ]);
    const total = counts?.total ?? { QUEUED: 0, RUNNING: 0, PASSED: 0, FAILED: 0, TIMED_OUT: 0, ERROR: 0, CANCELLED: 0 };
    const servedPools = new Set((workers ?? []).flatMap((w) => w.pools));
    const unserved = config.pools.filter((p) => !servedPools.has(p.name)).map((p) => p.name);
    const workersHealth: ComponentHealth =
      workers === null
        ? { name: 'workers', healthy: false, detail: 'unknown: the database did not answer' }
        : workers.length === 0
          ? { name: 'workers', healthy: false, detail: 'no worker process is alive' }
          : {
              name: 'workers',
              healthy: unserved.length === 0,
              detail: `${workers.length} alive${unserved.length ? `; no worker serves pool ${unserved.join(', ')}` : ''}`,
            };
    const components = [database, queue, workersHealth, images, artifacts];
    const liveCount = workers?.length ?? 0;
    return {
      activeTests: total.RUNNING,
      queuedTests: total.QUEUED,
      completedTests: TERMINAL_STATUSES.reduce((s, st) => s + total[st], 0),
      counts: { ...total, total: totalOf(total) },
      pools: config.pools.map((p) => {
        const e = envs?.get(p.name) ?? { ready: 0, busy: 0, unhealthy: 0 };
        const hosts = (workers ?? []).filter((w) => w.pools.includes(p.name)).length;
        return {
          name: p.name,
          kind: p.kind,
          ready: e.ready,
          busy: e.busy,
          unhealthy: e.unhealthy,
          capacity: p.capacity * hosts,
          queuedTests: counts?.byPool.get(p.name)?.QUEUED ?? 0,
          testTypes: p.testTypes,
        };
      }),
      workers: liveCount,
      healthy: components.every((c) => c.healthy),
      components,
    };
  }
}
