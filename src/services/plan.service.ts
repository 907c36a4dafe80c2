import { randomUUID } from 'node:crypto';
import { explainUnschedulable, imageOf, matchPool } from '../domain/matching';
import { planDigest } from '../domain/plan-digest';
import { describeProblems, validatePlan, type SubmitPlanInput } from '../domain/plan-input';
import type { PlanStatus } from '../domain/status';
import { decodeCursor, isUuid } from '../db/cursor';
import { MissingBundle, UniqueViolation, type NewTestRow, type Page } from '../db/plans.repository';
import type { PlanView } from '../views/view.types';
import type { ServiceDeps } from './context';
import { UserError } from './errors';
import { ImagesService } from './images.service';
import { cancelRunning, publishTestChanges } from './transitions';
import { bestEffort } from '../infra/best-effort';
import { toWorkFile, workFilesBytes, type WorkFile } from '../domain/work-files';
import type { Caller } from '../domain/access';
import { checkPlanChange } from './auth/plan-access';

export const MAX_PAGE = 500;
export const DEFAULT_PAGE = 50;

/** A cursor the client got from us, or a BAD_USER_INPUT error (never silently the first page again). */
export function checkCursor(after: string | null | undefined): string | null {
  if (after === null || after === undefined) return null;
  if (decodeCursor(after) === null) throw new UserError('BAD_USER_INPUT', `after: "${after.slice(0, 40)}" is not a cursor returned by this API`, { field: 'after' });
  return after;
}

export function pageSize(first: number | null | undefined): number {
  if (first === null || first === undefined) return DEFAULT_PAGE;
  if (!Number.isInteger(first) || first < 0 || first > MAX_PAGE) throw new UserError('BAD_USER_INPUT', `first must be from 0 to ${MAX_PAGE} (got ${first})`, { field: 'first' });
  return first;
}

export class PlanService {
  private readonly images: ImagesService;

  constructor(private readonly d: ServiceDeps) {
    this.images = new ImagesService(d);
  }

  /**
   * Validates everything, matches each test to a pool, stores the plan and its tests in one transaction,
   * then queues one job per test. Rejected input stores and queues nothing.
   */
  async submit(input: SubmitPlanInput, caller: Caller | null = null): Promise<PlanView> {
    const { config, logger } = this.d;
    const problems = validatePlan(input, config.limits);
    if (problems.length) {
      throw new UserError('BAD_USER_INPUT', `invalid plan: ${describeProblems(problems)}`, { problems: problems.slice(0, 100) });
    }
    const digest = input.idempotencyKey ? planDigest(input) : null;
    if (input.idempotencyKey) {
      const existing = await this.d.plans.findByIdempotencyKey(input.idempotencyKey);
      if (existing) return this.sameContent(input.idempotencyKey, digest!, existing);
    }
    const bundle = input.bundle ? await this.d.bundles.get(input.bundle) : null;
    if (input.bundle && !bundle) {
      throw bundleNotUploaded(input.bundle!);
    }
    const planFiles: WorkFile[] = (input.files ?? []).map(toWorkFile);
    // what every test's working directory starts with: the bundle (each file in whole blocks), the plan's files
    const sharedBytes = (bundle ? bundle.sizeBytes + bundle.files * 4096 : 0) + workFilesBytes(planFiles);

    const tests: NewTestRow[] = [];
    const imageOfTest: { image: string; index: number }[] = [];
    const unschedulable: string[] = []; // the first few, for the message
    let unschedulableCount = 0;
    const refuse = (i: number, name: string, why: string) => {
      if (unschedulableCount++ < 5) unschedulable.push(`tests[${i}] "${name}": ${why}`);
    };
    const defined = new Set(config.images.map((im) => im.name));
    input.tests.forEach((t, i) => {
      const req = t.requirements ?? {};
      if (req.image && !defined.has(req.image)) {
        refuse(i, t.name, `no image "${req.image}" is configured (configured: ${[...defined].join(', ') || 'none'})`);
        return;
      }
      const pool = matchPool(config.pools, t.type, req);
      if (!pool) {
        refuse(i, t.name, `no pool can run it (${explainUnschedulable(config.pools, t.type, req)})`);
        return;
      }
      const files = (t.files ?? []).map(toWorkFile);
      const inputBytes = sharedBytes + workFilesBytes(files);
      const diskBytes = (pool.diskMb ?? 2048) * 1024 * 1024;
      if (inputBytes > diskBytes) {
        refuse(i, t.name, `its bundle and files (${mb(inputBytes)}) do not fit the ${pool.diskMb ?? 2048} MiB disk of pool "${pool.name}"`);
        return;
      }
      imageOfTest.push({ image: imageOf(pool, req), index: i });
      tests.push({
        id: randomUUID(),
        name: t.name,
        type: t.type,
        script: t.script,
        timeoutSeconds: t.timeoutSeconds ?? config.limits.defaultTimeoutSeconds,
        requirements: stripNulls({ ...req, tags: req.tags ? [...req.tags] : undefined }),
        services: (t.services ?? []).map((s) => stripNulls({ ...s })),
        env: (t.env ?? []).map((e) => ({ name: e.name, value: e.value })),
        artifactPaths: t.artifactPaths ?? [],
        maxRetries: t.maxRetries ?? config.limits.defaultMaxRetries,
        pool: pool.name,
        files,
      });
    });
    if (!unschedulableCount) {
      // An image whose build failed cannot run anything until its definition is fixed.
      const failed = await this.images.failed([...new Set(imageOfTest.map((x) => x.image))]);
      if (failed.size) {
        tests.forEach((t, j) => {
          const { image, index } = imageOfTest[j];
          const why = failed.get(image);
          if (why !== undefined) refuse(index, t.name, `image "${image}" failed to build: ${why}`);
        });
      }
    }
    if (unschedulableCount) {
      const more = unschedulableCount - unschedulable.length;
      throw new UserError('UNSCHEDULABLE', `${unschedulable.join('; ')}${more ? `; and ${more} more` : ''}`, { tests: unschedulableCount });
    }

    await this.d.fairUse.queue(caller, tests.length);
    const priority = input.priority ?? 0;
    let plan: PlanView;
    try {
      plan = await this.d.plans.create({
        id: randomUUID(),
        name: input.name,
        priority,
        idempotencyKey: input.idempotencyKey ?? null,
        idempotencyDigest: digest,
        bundleId: bundle?.id ?? null,
        files: planFiles,
        tests,
        submittedBy: caller?.name ?? null,
        submittedByTokenId: caller?.tokenId ?? null,
      });
    } catch (e) {
      // a concurrent submission with the same key won the race: answer with its plan
      if (e instanceof UniqueViolation && input.idempotencyKey) {
        const existing = await this.d.plans.findByIdempotencyKey(input.idempotencyKey);
        if (existing) return this.sameContent(input.idempotencyKey, digest!, existing);
      }
      // retention deleted the bundle (no plan used it, its grace was over) after the check above
      if (e instanceof MissingBundle) throw bundleNotUploaded(input.bundle!);
      throw e;
    }
    try {
      await this.d.queues.enqueue(tests.map((t) => ({ testId: t.id, planId: plan.id, pool: t.pool, priority })));
    } catch (err) {
      // stored is what counts: the reconciler queues QUEUED tests that have no job
      logger.error({ err, planId: plan.id }, 'could not queue the tests of a stored plan; the reconciler will');
    }
    this.d.events.emit('plan', plan);
    this.d.events.emit('system', { reason: 'plan submitted' });
    logger.info({ planId: plan.id, tests: tests.length, priority }, 'plan submitted');
    return plan;
  }

  /** A key names one submission: the same content gets its plan again, other content is refused. */
  private sameContent(key: string, digest: string, existing: { plan: PlanView; digest: string | null }): PlanView {
    // a plan stored before digests were kept: its content cannot be compared, the key alone decides
    if (existing.digest === null || existing.digest === digest) return existing.plan;
    this.d.logger.info({ planId: existing.plan.id }, 'idempotencyKey reused with other content: refused');
    throw new UserError(
      'BAD_USER_INPUT',
      `idempotencyKey "${key.slice(0, 60)}" was already used with other content: the same key must come with the same plan (or use a new key)`,
      { field: 'idempotencyKey' },
    );
  }

  async get(id: string): Promise<PlanView | null> {
    return isUuid(id) ? this.d.plans.get(id) : null;
  }

  /** Plans by id, in one query for the plans and one for their counts. */
  async byIds(ids: readonly string[]): Promise<Map<string, PlanView>> {
    return this.d.plans.byIds(ids.filter(isUuid));
  }

  async list(first: number | null | undefined, after: string | null | undefined, status: PlanStatus | null | undefined): Promise<Page<PlanView>> {
    return this.d.plans.list(pageSize(first), checkCursor(after), status ?? null);
  }

  /** QUEUED tests are cancelled and taken off the queue; RUNNING ones are killed by their workers. */
  async cancel(id: string, caller: Caller | null = null): Promise<PlanView> {
    await checkPlanChange(this.d.tokens, id, caller, 'cancel');
    if (!isUuid(id) || !(await this.d.plans.markCancelled(id))) throw new UserError('NOT_FOUND', `no plan with id ${id}`, { id });
    const cancelled = await this.d.tests.cancelQueuedOfPlan(id, this.d.now());
    // a job left behind is harmless: the worker that takes it finds the test CANCELLED and skips it
    await Promise.all(cancelled.map((t) => bestEffort(this.d.logger, `removing the job of cancelled test ${t.id} from its queue`, () => this.d.queues.remove(t.pool, t.id))));
    for (const running of await this.d.tests.runningOfPlan(id)) await cancelRunning(this.d, running.id);
    const plan = await publishTestChanges(this.d, id, cancelled);
    if (!plan) throw new UserError('NOT_FOUND', `no plan with id ${id}`, { id });
    this.d.logger.info({ planId: id, cancelledQueued: cancelled.length }, 'plan cancelled');
    return plan;
  }
}

const mb = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;

function stripNulls<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== null && v !== undefined)) as T;
}

const bundleNotUploaded = (id: string) =>
  new UserError('BAD_USER_INPUT', `invalid plan: bundle "${id}" was not uploaded (POST /bundles answers the id to give here)`, { field: 'bundle' });
