import type { EnvironmentView } from '../views/view.types';
import type { PrismaClient } from '../generated/prisma/client';
import type { EnvironmentKind, EnvironmentStatus } from '../domain/enums';
import { environmentView } from '../views/view.mappers';

export interface NewEnvironment {
  id: string;
  pool: string;
  kind: EnvironmentKind;
  host: string;
  workerId: string;
  arch: string;
  cpus: number;
  memoryMb: number;
  image: string;
  tags: string[];
}

/** Environment rows (owned by the worker that provisioned them) and worker registrations. */
export class EnvironmentsRepository {
  /** `now`: the clock of the services (ServiceDeps.now), for every time this repository writes. */
  constructor(
    private readonly prisma: PrismaClient,
    private readonly now: () => Date,
  ) {}

  async create(e: NewEnvironment): Promise<EnvironmentView> {
    const now = this.now();
    return environmentView(await this.prisma.environment.create({ data: { ...e, status: 'PROVISIONING', createdAt: now, heartbeatAt: now } }));
  }

  async update(
    id: string,
    data: { status?: EnvironmentStatus; currentTestId?: string | null; lastError?: string | null; testsRunIncrement?: number; failuresIncrement?: boolean },
  ): Promise<EnvironmentView> {
    const row = await this.prisma.environment.update({
      where: { id },
      data: {
        ...(data.status ? { status: data.status } : {}),
        ...(data.currentTestId !== undefined ? { currentTestId: data.currentTestId } : {}),
        ...(data.lastError !== undefined ? { lastError: data.lastError } : {}),
        ...(data.testsRunIncrement ? { testsRun: { increment: data.testsRunIncrement } } : {}),
        ...(data.failuresIncrement ? { failures: { increment: 1 } } : {}),
        heartbeatAt: this.now(),
      },
    });
    return environmentView(row);
  }

  async get(id: string): Promise<EnvironmentView> {
    return environmentView(await this.prisma.environment.findUniqueOrThrow({ where: { id } }));
  }

  async registerWorker(w: { id: string; host: string; pid: number; pools: string[] }): Promise<void> {
    const now = this.now();
    await this.prisma.worker.upsert({ where: { id: w.id }, create: { ...w, startedAt: now, heartbeatAt: now }, update: { ...w, heartbeatAt: now, stoppedAt: null } });
  }

  async heartbeat(workerId: string): Promise<void> {
    const now = this.now();
    await this.prisma.worker.update({ where: { id: workerId }, data: { heartbeatAt: now } });
    await this.prisma.environment.updateMany({ where: { workerId, status: { not: 'RETIRED' } }, data: { heartbeatAt: now } });
  }

  /** The worker stopped: its remaining environments are retired. */
  async stopWorker(workerId: string): Promise<EnvironmentView[]> {
    await this.prisma.worker.updateMany({ where: { id: workerId }, data: { stoppedAt: this.now() } });
    return this.retireOf([workerId]);
  }

  /** Workers whose heartbeat is older than `before` and not marked stopped: they died. */
  async deadWorkers(before: Date): Promise<string[]> {
    const rows = await this.prisma.worker.findMany({ where: { heartbeatAt: { lt: before }, stoppedAt: null }, select: { id: true } });
    return rows.map((r) => r.id);
  }

  async markWorkersStopped(ids: string[]): Promise<void> {
    await this.prisma.worker.updateMany({ where: { id: { in: ids } }, data: { stoppedAt: this.now() } });
  }

  async retireOf(workerIds: string[]): Promise<EnvironmentView[]> {
    const rows = await this.prisma.environment.updateManyAndReturn({
      where: { workerId: { in: workerIds }, status: { not: 'RETIRED' } },
      data: { status: 'RETIRED', currentTestId: null },
    });
    return rows.map(environmentView);
  }
}
