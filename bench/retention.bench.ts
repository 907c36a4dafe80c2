// The artifact store with a large finished plan: TESTS tests (10,000 by default, --tests=N), each with a
// stdout.log of its own content and an empty stderr.log shared by all, stored as the worker stores them
// and their rows loaded by SQL. Measured: the plan's tar streamed over HTTP, a scan of the store's size,
// systemStatus with the artifacts component, and deletePlan (time, and the longest the API did not
// answer meanwhile: the event-loop stall of this process, where the embedded database runs too).
import { randomBytes } from 'node:crypto';
import { gqlOk } from '../test/helpers/gql';
import { fmtBytes, fmtMs, latency, stallMonitor, timed, type Section, type SectionContext } from './bench-kit';

const STATUS = `{ systemStatus { healthy components { name healthy detail } } }`;

async function loadPlan(ctx: SectionContext, tests: number): Promise<{ planId: string; bytes: number }> {
  const { store } = ctx.server.core.deps;
  const prisma = ctx.server.core.db.prisma;
  const keys: string[] = [];
  let bytes = 0;
  for (let i = 0; i < tests; i++) {
    const put = await store.putBytes(`test ${i} ${randomBytes(8).toString('hex')}\n${'x'.repeat(1000)}\n`);
    keys.push(put.key);
    bytes += put.size;
  }
  const empty = (await store.putBytes('')).key;
  const [{ id: planId }] = await prisma.$queryRawUnsafe<{ id: string }[]>(
    `INSERT INTO "execution_plan" ("id", "name", "priority", "status", "test_count", "started_at", "finished_at")
     VALUES (gen_random_uuid(), 'retention-bench', 0, 'PASSED', $1, now(), now()) RETURNING "id"`,
    tests,
  );
  await prisma.$executeRawUnsafe(
    `INSERT INTO "test_case" ("id", "plan_id", "name", "type", "script", "timeout_seconds", "artifact_paths", "max_retries", "priority", "pool", "status", "attempts", "started_at", "finished_at")
     SELECT gen_random_uuid(), $1::uuid, 'test-' || g, 'UNIT', 'true', 60, '{}', 0, 0, 'container', 'PASSED', 1, now(), now() FROM generate_series(1, $2) g`,
    planId,
    tests,
  );
  await prisma.$executeRawUnsafe(
    `INSERT INTO "test_run" ("id", "test_id", "attempt", "status", "exit_code", "finished_at")
     SELECT gen_random_uuid(), t."id", 1, 'PASSED', 0, now() FROM "test_case" t WHERE t."plan_id" = $1::uuid`,
    planId,
  );
  await prisma.$executeRawUnsafe(
    `INSERT INTO "artifact" ("id", "run_id", "name", "kind", "size_bytes", "sha256", "storage_key")
     SELECT gen_random_uuid(), r."id", 'stdout.log', 'LOG'::"ArtifactKind", 1018, k.key, k.key
       FROM (SELECT r."id", row_number() OVER (ORDER BY r."id") AS n FROM "test_run" r JOIN "test_case" t ON t."id" = r."test_id" WHERE t."plan_id" = $1::uuid) r
       JOIN (SELECT key, ord FROM jsonb_array_elements_text($2::jsonb) WITH ORDINALITY AS e(key, ord)) k ON k.ord = r.n
     UNION ALL
     SELECT gen_random_uuid(), r."id", 'stderr.log', 'LOG'::"ArtifactKind", 0, $3, $3 FROM "test_run" r JOIN "test_case" t ON t."id" = r."test_id" WHERE t."plan_id" = $1::uuid`,
    planId,
    JSON.stringify(keys),
    empty,
  );
  return { planId, bytes };
}

export const retention: Section = {
  description: 'a finished plan of 10,000 tests with 20,000 artifacts: its tar, a store scan, systemStatus, deletePlan (time and API stall)',
  async run(ctx) {
    const tests = ctx.options.retentionTests;
    ctx.log(`storing ${tests} blobs and loading a plan of ${tests} tests with ${tests * 2} artifacts…`);
    const { planId, bytes } = await loadPlan(ctx, tests);
    const url = ctx.server.url;

    const tar = await timed(async () => {
      const res = await fetch(`${url}/plans/${planId}/artifacts.tar`);
      let n = 0;
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) n += chunk.length;
      return n;
    });
    ctx.record({
      key: 'tar',
      measure: `GET /plans/:id/artifacts.tar, ${tests * 2} artifacts`,
      value: tar.ms,
      unit: 'ms',
      detail: `${fmtBytes(tar.result)} (${fmtBytes(bytes)} of logs), ${Math.round(((tests * 2) / tar.ms) * 1000).toLocaleString('en-US')} entries/s`,
    });

    const scan = await timed(() => ctx.server.maintenance.pass({ scan: true }));
    ctx.record({ key: 'scan', measure: `scan of the store's size (${scan.result.scanned?.blobs ?? '?'} blobs)`, value: scan.ms, unit: 'ms' });

    const status = await latency(async () => void (await gqlOk(url, STATUS)), { count: ctx.options.requests });
    ctx.record({ key: 'status', measure: 'systemStatus with the artifacts component, p50', value: status.stats.p50, unit: 'ms', detail: `p99 ${fmtMs(status.stats.p99)}` });

    const stall = stallMonitor();
    const del = await timed(() => gqlOk(url, `mutation($id: ID!) { deletePlan(id: $id) }`, { id: planId }));
    const longest = await stall.stop();
    const left = await ctx.server.core.deps.storeUsage.get();
    ctx.record({
      key: 'delete',
      measure: `deletePlan of ${tests} tests, ${tests * 2} artifacts, ${tests} blobs`,
      value: del.ms,
      unit: 'ms',
      detail: `longest event-loop stall ${fmtMs(longest)}; ${Math.round((tests / del.ms) * 1000).toLocaleString('en-US')} tests/s; store left ${left?.blobs ?? '?'} blobs`,
    });
  },
};
