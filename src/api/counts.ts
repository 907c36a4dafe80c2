import { totalOf, type StatusCounts as DomainCounts } from '../domain/status';
import type { StatusCounts } from './common.types';

export function toGraphCounts(c: DomainCounts): StatusCounts {
  return {
    queued: c.QUEUED,
    running: c.RUNNING,
    passed: c.PASSED,
    failed: c.FAILED,
    timedOut: c.TIMED_OUT,
    error: c.ERROR,
    cancelled: c.CANCELLED,
    total: totalOf(c),
  };
}
