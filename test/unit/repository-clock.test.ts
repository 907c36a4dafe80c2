// The repositories write times from the clock they are given (the services' ServiceDeps.now), not from
// the machine's: a reconciler test with a fake clock sees the heartbeats and cancellations it set.
// Runs on the embedded PGlite database (a copy of a migrated template).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { openDatabase, type Database } from '../../src/db/database';
import { EnvironmentsRepository } from '../../src/db/environments.repository';
import { PlansRepository } from '../../src/db/plans.repository';
import { RunsRepository } from '../../src/db/runs.repository';
import { freshPgliteDir, quietLogger } from '../helpers/server';

describe('repositories use the injected clock', () => {
  let dataDir: string;
  let db: Database;
  let clock = new Date('2001-02-03T04:05:06.007Z');
  const now = () => clock;

  before(async () => {
    dataDir = await freshPgliteDir();
    db = await openDatabase({ dataDir, logger: quietLogger() });
  });
  after(async () => {
    await db?.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('stamps worker registrations, heartbeats, stops and environment updates with it', async () => {
    const envs = new EnvironmentsRepository(db.prisma, now);
    const workerId = `w-${randomUUID()}`;
    await envs.registerWorker({ id: workerId, host: 'h', pid: 1, pools: ['p'] });
    const registered = await db.prisma.worker.findUniqueOrThrow({ where: { id: workerId } });
    assert.equal(registered.heartbeatAt.toISOString(), '2001-02-03T04:05:06.007Z');

    const env = await envs.create({ id: randomUUID(), pool: 'p', kind: 'CONTAINER', host: 'h', workerId, arch: 'x86_64', cpus: 1, memoryMb: 64, image: 'i', tags: [] });
    const created = await db.prisma.environment.findUniqueOrThrow({ where: { id: env.id } });
    assert.equal(created.heartbeatAt.toISOString(), '2001-02-03T04:05:06.007Z');
    clock = new Date('2001-02-03T04:06:00.000Z');
    await envs.update(env.id, { status: 'READY' });
    const updated = await db.prisma.environment.findUniqueOrThrow({ where: { id: env.id } });
    assert.equal(updated.heartbeatAt.toISOString(), '2001-02-03T04:06:00.000Z');

    clock = new Date('2001-02-03T04:07:00.000Z');
    await envs.heartbeat(workerId);
    const beat = await db.prisma.worker.findUniqueOrThrow({ where: { id: workerId } });
    assert.equal(beat.heartbeatAt.toISOString(), '2001-02-03T04:07:00.000Z');
    // dead by the fake clock: its heartbeat is older than a minute after it
    assert.deepEqual(await envs.deadWorkers(new Date('2001-02-03T04:08:00.000Z')), [workerId]);
    assert.deepEqual(await envs.deadWorkers(new Date('2001-02-03T04:06:30.000Z')), []);

    clock = new Date('2001-02-03T04:09:00.000Z');
    await envs.stopWorker(workerId);
    const stopped = await db.prisma.worker.findUniqueOrThrow({ where: { id: workerId } });
    assert.equal(stopped.stoppedAt?.toISOString(), '2001-02-03T04:09:00.000Z');
  });

  it('stamps a cancelled plan and a lost attempt with it', async () => {
    const plans = new PlansRepository(db.prisma, now);
    const runs = new RunsRepository(db.prisma, now);
    const planId = randomUUID();
    const testId = randomUUID();
    await plans.create({
      id: planId, name: 'clock', priority: 0, idempotencyKey: null, idempotencyDigest: null, bundleId: null, files: [], submittedBy: null, submittedByTokenId: null,
      tests: [{ id: testId, name: 't', type: 'UNIT', script: 'true', timeoutSeconds: 5, requirements: {}, services: [], env: [], artifactPaths: [], maxRetries: 0, pool: 'p', files: [] }],
    });
    clock = new Date('2002-01-01T00:00:00.000Z');
    assert.equal(await plans.markCancelled(planId), true);
    const plan = await db.prisma.executionPlan.findUniqueOrThrow({ where: { id: planId } });
    assert.equal(plan.cancelledAt?.toISOString(), '2002-01-01T00:00:00.000Z');

    // the fenced attempt statements stamp the injected clock too (not the database's now())
    await db.prisma.testCase.update({ where: { id: testId }, data: { status: 'QUEUED', finishedAt: null } });
    clock = new Date('2002-01-01T00:00:30.000Z');
    const begun = await runs.startAttempt(testId, { from: 'QUEUED', attempt: 0 }, randomUUID(), 'w');
    assert.ok(begun, 'the attempt began');
    assert.equal(begun.test.startedAt, '2002-01-01T00:00:30.000Z');
    clock = new Date('2002-01-01T00:01:00.000Z');
    const lost = await runs.loseAttempt(testId, 1, 'worker lost', 'ERROR');
    assert.equal(lost?.finishedAt, '2002-01-01T00:01:00.000Z');
    const run = await db.prisma.testRun.findFirstOrThrow({ where: { testId, attempt: 1 } });
    assert.equal(run.finishedAt?.toISOString(), '2002-01-01T00:01:00.000Z');
    assert.equal(run.status, 'ERROR');
  });
});
