// PERFORMANCE tests as a user sees them through the API: CPUs no other test uses while they run
// (a pool of capacity 2 with 1 CPU each, on whatever this host has), every metric in the result, and
// the figures tests report themselves. Real worker, sandboxes, Redis and PGlite.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { formatCpuList, parseCpuList } from '../../src/environments/cgroups/cpu-list';
import { gqlOk, sleep } from '../helpers/gql';
import { startTestRedis, type TestRedis } from '../helpers/redis';
import { startTestServer, type TestServer } from '../helpers/server';

const POOLS = JSON.stringify([
  { name: 'container', kind: 'CONTAINER', cpus: 1, memoryMb: 256, image: 'debian-bookworm', capacity: 2, pids: 64, testTypes: ['UNIT', 'INTEGRATION', 'SECURITY'] },
  { name: 'perf', kind: 'CONTAINER', cpus: 1, memoryMb: 256, image: 'debian-bookworm', capacity: 2, pids: 64, testTypes: ['PERFORMANCE'] },
]);
const BASE_CPUS = '/sys/fs/cgroup/cpuset/test-orchestrator/cpuset.cpus';

const PLAN = `query($id: ID!) { plan(id: $id) { status counts { running queued }
  tests(first: 100) { nodes { name status environment { pool }
    result { exitCode stdout stderr durationMs errorMessage outputTruncated
      metrics { cpuTimeMs peakMemoryBytes userCpuMs systemCpuMs voluntaryContextSwitches involuntaryContextSwitches readBytes writeBytes }
      reportedMetrics { name value unit } } } } } }`;

/** Prints `<ns since epoch> <Cpus_allowed_list>` every 100 ms for `seconds` (~25 bytes a line). */
const sampler = (seconds: number) =>
  `end=$(( $(date +%s%N) / 1000000 + ${Math.round(seconds * 1000)} )); while [ $(( $(date +%s%N) / 1000000 )) -lt "$end" ]; do echo "$(date +%s%N) $(grep Cpus_allowed_list /proc/self/status | cut -f2)"; sleep 0.1; done`;

const samples = (stdout: string) =>
  stdout
    .split('\n')
    .filter((l) => /^\d+ [\d,-]+$/.test(l))
    .map((l) => l.split(' '))
    .map(([at, list]) => ({ at: BigInt(at), cpus: parseCpuList(list) }));

describe('performance tests', () => {
  let redis: TestRedis;
  let server: TestServer;
  let url: string;

  before(async () => {
    redis = await startTestRedis();
    server = await startTestServer({ redisUrl: redis.url, worker: true, env: { POOLS, MAX_OUTPUT_BYTES: '4096', WORKER_HEARTBEAT_MS: '1000' } });
    url = server.url;
  });
  after(async () => {
    await server?.stop();
    await redis?.stop();
  });

  async function runPlan(tests: object[]) {
    const { submitPlan } = await gqlOk(url, `mutation($input: SubmitPlanInput!) { submitPlan(input: $input) { id } }`, {
      input: { name: `perf-${randomUUID().slice(0, 6)}`, tests },
    });
    const deadline = Date.now() + 90_000;
    for (;;) {
      const { plan } = await gqlOk(url, PLAN, { id: submitPlan.id });
      if (['PASSED', 'FAILED', 'CANCELLED'].includes(plan.status) && plan.counts.running === 0 && plan.counts.queued === 0) {
        return Object.fromEntries(plan.tests.nodes.map((t: any) => [t.name, t]));
      }
      if (Date.now() > deadline) throw new Error(`plan not finished: ${JSON.stringify(plan.counts)}`);
      await sleep(200);
    }
  }

  it('two performance tests never share a CPU, and unit tests stay off theirs', async (t) => {
    if (!existsSync(BASE_CPUS)) return t.skip('no cgroup v1 cpuset hierarchy');
    const allowed = parseCpuList(readFileSync(BASE_CPUS, 'utf8'));
    if (allowed.length < 2) return t.skip('one CPU: nothing to dedicate');
    const tests = await runPlan([
      { name: 'perf-a', type: 'PERFORMANCE', script: sampler(2) },
      { name: 'perf-b', type: 'PERFORMANCE', script: sampler(2) },
      { name: 'unit-a', type: 'UNIT', script: sampler(7) },
      { name: 'unit-b', type: 'UNIT', script: sampler(7) },
    ]);
    for (const tc of Object.values(tests) as any[]) assert.equal(tc.status, 'PASSED', `${tc.name}: ${JSON.stringify(tc.result)}`);
    assert.equal(tests['perf-a'].environment.pool, 'perf');
    const windows = ['perf-a', 'perf-b'].map((n) => {
      const s = samples(tests[n].result.stdout);
      assert.ok(s.every((x) => formatCpuList(x.cpus) === formatCpuList(s[0].cpus)), `${n} keeps its CPUs: ${tests[n].result.stdout}`);
      assert.equal(s[0].cpus.length, 1, `${n} has the one CPU of its pool`);
      assert.notEqual(s[0].cpus[0], allowed[0], 'never the lowest CPU, which other tests keep');
      return { from: s[0].at, to: s[s.length - 1].at, cpus: s[0].cpus };
    });
    const [w1, w2] = windows;
    const overlap = w1.from <= w2.to && w2.from <= w1.to;
    if (overlap) assert.deepEqual(w1.cpus.filter((c) => w2.cpus.includes(c)), [], 'performance tests running together share no CPU');
    if (allowed.length === 2) assert.equal(overlap, false, 'one CPU to dedicate here: the second waited for the first');

    let during = 0;
    for (const n of ['unit-a', 'unit-b']) {
      for (const s of samples(tests[n].result.stdout)) {
        const busy = windows.filter((w) => s.at >= w.from && s.at <= w.to).flatMap((w) => w.cpus);
        if (busy.length) during++;
        assert.deepEqual(s.cpus.filter((c) => busy.includes(c)), [], `${n} is off ${busy} at ${s.at}, it had ${s.cpus}`);
      }
    }
    assert.ok(during > 0, 'the unit tests ran while the performance tests did');
  });

  it('reports every metric, and what tests report themselves, through the API', async () => {
    const tests = await runPlan([
      {
        name: 'measured',
        type: 'PERFORMANCE',
        script: [
          'i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done',
          'dd if=/dev/zero of=/dev/null bs=1 count=200000 2>/dev/null', // kernel time
          'dd if=/dev/zero of=/work/big bs=1M count=10 conv=fsync 2>/dev/null',
          'echo "##metric throughput 123.5 ops/s"',
          'head -c 8000 /dev/zero | tr "\\0" y; echo', // past MAX_OUTPUT_BYTES (4096): what follows is not kept, still counted
          'echo "##metric latency_p99 7 ms"',
          'echo "##metric broken one"',
          `echo '[{"name":"startup","value":0.25,"unit":"s"},{"name":"bad","value":"x"}]' > "$METRICS_FILE"`,
        ].join('\n'),
      },
      { name: 'unit', type: 'UNIT', script: 'echo "##metric unit_figure 1"; cat /dev/null' },
    ]);
    const m = tests.measured;
    assert.equal(m.status, 'PASSED', JSON.stringify(m.result));
    assert.equal(m.result.outputTruncated, true);
    const u = m.result.metrics;
    assert.ok(m.result.durationMs > 0);
    assert.ok(u.cpuTimeMs > 0 && u.userCpuMs > 0 && u.systemCpuMs > 0, `CPU time, split: ${JSON.stringify(u)}`);
    assert.ok(u.userCpuMs + u.systemCpuMs <= u.cpuTimeMs * 1.2 + 20, `user + system is about the total: ${JSON.stringify(u)}`);
    assert.ok(u.peakMemoryBytes > 0, JSON.stringify(u));
    assert.ok(u.voluntaryContextSwitches > 0 && u.involuntaryContextSwitches >= 0, JSON.stringify(u));
    assert.ok(u.writeBytes >= 10 * 1024 * 1024, `10 MiB written with fsync: ${JSON.stringify(u)}`);
    assert.ok(u.readBytes >= 0, JSON.stringify(u));
    assert.deepEqual(m.result.reportedMetrics, [
      { name: 'throughput', value: 123.5, unit: 'ops/s' },
      { name: 'latency_p99', value: 7, unit: 'ms' },
      { name: 'startup', value: 0.25, unit: 's' },
    ]);
    // every test type gets them
    assert.deepEqual(tests.unit.result.reportedMetrics, [{ name: 'unit_figure', value: 1, unit: null }]);
    assert.ok(tests.unit.result.metrics.userCpuMs !== null && tests.unit.result.metrics.voluntaryContextSwitches !== null, JSON.stringify(tests.unit.result.metrics));
  });
});
