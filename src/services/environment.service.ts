import { isUuid } from '../db/cursor';
import { stringProblem } from '../domain/input-strings';
import type { EnvironmentView } from '../views/view.types';
import type { ServiceDeps } from './context';
import { UserError } from './errors';

export class EnvironmentService {
  constructor(private readonly d: ServiceDeps) {}

  async list(pool: string | null | undefined, status: EnvironmentView['status'] | null | undefined): Promise<EnvironmentView[]> {
    const problem = pool ? stringProblem(pool) : null;
    if (problem) throw new UserError('BAD_USER_INPUT', `pool ${problem}`, { field: 'pool' });
    return this.d.status.environments({ pool, status });
  }

  /** Live use of busy environments, as their workers last reported it (every few seconds). */
  utilization(ids: readonly string[]) {
    return this.d.usage.getMany(ids);
  }

  async byIds(ids: readonly string[]): Promise<Map<string, EnvironmentView>> {
    return this.d.status.environmentsByIds(ids.filter(isUuid));
  }
}
