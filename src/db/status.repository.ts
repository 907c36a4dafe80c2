import { emptyCounts, type StatusCounts, type TestStatus } from '../domain/status';
import type { EnvironmentView } from '../views/view.types';
import type { PrismaClient } from '../generated/prisma/client';
import type { EnvironmentStatus } from '../domain/enums';
import { environmentView } from '../views/view.mappers';

export interface PoolEnvironmentCounts {
  ready: number;
  busy: number;
  unhealthy: number;
}

/** Reads for systemStatus: small counter tables and indexed counts, never a scan of test_case. */
export class StatusRepository {
  constructor(private readonly prisma: PrismaClient) {}

  /** Test counts overall and per pool, from the trigger-kept counters. */
  async testCounts(): Promise<{ total: StatusCounts; byPool: Map<string, StatusCounts> }> {
    const rows = await this.prisma.statusCount.groupBy({ by: ['pool', 'status'], _sum: { n: true } });
    const total = emptyCounts();
    const byPool = new Map<string, StatusCounts>();
    for (const r of rows) {
      const n = Number(r._sum.n ?? 0n);
      total[r.status as TestStatus] += n;
      const pc = byPool.get(r.pool) ?? emptyCounts();
      pc[r.status as TestStatus] += n;
      byPool.set(r.pool, pc);
    }
    return { total, byPool };
  }

  async environmentCounts(): Promise<Map<string, PoolEnvironmentCounts>> {
    const rows = await this.prisma.environment.groupBy({
      by: ['pool', 'status'],
      where: { status: { in: ['READY', 'BUSY', 'UNHEALTHY'] } },
      _count: { _all: true },
    });
    const out = new Map<string, PoolEnvironmentCounts>();
    for (const r of rows) {
      const c = out.get(r.pool) ?? { ready: 0, busy: 0, unhealthy: 0 };
      if (r.status === 'READY') c.ready += r._count._all;
      if (r.status === 'BUSY') c.busy += r._count._all;
      if (r.status === 'UNHEALTHY') c.unhealthy += r._count._all;
      out.set(r.pool, c);
    }
    return out;
  }

  /** Worker processes whose heartbeat is fresher than `since`, with the pools each serves. */
  async liveWorkers(since: Date): Promise<{ id: string; pools: string[] }[]> {
    return this.prisma.worker.findMany({ where: { heartbeatAt: { gte: since }, stoppedAt: null }, select: { id: true, pools: true } });
  }

  async environments(filter: { pool?: string | null; status?: EnvironmentStatus | null }): Promise<EnvironmentView[]> {
    const rows = await this.prisma.environment.findMany({
      where: {
        ...(filter.pool ? { pool: filter.pool } : {}),
        ...(filter.status ? { status: filter.status } : { status: { not: 'RETIRED' } }),
      },
      orderBy: [{ pool: 'asc' }, { createdAt: 'asc' }],
      take: 1000,
    });
    return rows.map(environmentView);
  }

  /** Environments by id, in one query (the ids of a page of tests). */
  async environmentsByIds(ids: readonly string[]): Promise<Map<string, EnvironmentView>> {
    if (!ids.length) return new Map();
    const rows = await this.prisma.environment.findMany({ where: { id: { in: [...ids] } } });
    return new Map(rows.map((r) => [r.id, environmentView(r)]));
  }
}
