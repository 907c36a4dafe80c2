// classifyRun (src/domain/outcome.ts): what a user reads for a run that hit its process limit.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { classifyRun, type RunFacts } from '../../src/domain/outcome';

const facts = (f: Partial<RunFacts>): RunFacts => ({ exitCode: 0, signal: null, timedOut: false, oomKilled: false, stderr: '', timeoutSeconds: 8, memoryMb: 256, ...f });

describe('classifyRun and the process limit', () => {
  it('a run whose forks were refused FAILED with the limit named, even when it exited 0 or timed out', () => {
    assert.deepEqual(classifyRun(facts({ pidsLimitHit: true, pidsLimit: 64 })), {
      status: 'FAILED',
      errorMessage: 'reached its process limit of 64 processes (pids): a fork was refused',
    });
    assert.deepEqual(classifyRun(facts({ pidsLimitHit: true, pidsLimit: 64, timedOut: true, exitCode: null, signal: 'SIGKILL' })), {
      status: 'FAILED',
      errorMessage: 'reached its process limit of 64 processes (pids): a fork was refused (then timed out after 8 s)',
    });
  });
  it('without it, nothing changes', () => {
    assert.equal(classifyRun(facts({})).status, 'PASSED');
    assert.equal(classifyRun(facts({ timedOut: true })).status, 'TIMED_OUT');
  });

  it('a service that failed or never got ready is named as the reason, without the exit code', () => {
    const stderr = 'some output\n[orchestrator] service "db" not ready within 3600 ms (readyCheck: pg_isready)\n';
    assert.deepEqual(classifyRun(facts({ exitCode: 125, stderr })), { status: 'FAILED', errorMessage: 'service "db" not ready within 3600 ms (readyCheck: pg_isready): the script was not run' });
    assert.equal(classifyRun(facts({ exitCode: 125, stderr: 'mine\n' })).errorMessage, 'exit code 125: mine');
  });
});
