// What dedicated CPUs cost a run (issue 8): a trivial test (`true`) run by the driver (in a driver host,
// as in a worker) without dedicated CPUs — it joins the shared cpuset group — and with one reserved
// CPU (lock file taken, the shared group rewritten before and after, its own cpuset group), taken in
// turns. Independent of the database: measured once.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EnvironmentShape, RunSpec } from '../src/environments/driver';
import { RemoteDriver } from '../src/environments/remote/remote.driver';
import { fmtMs, now, stats, type Section } from './bench-kit';

const RUNS = 50;
let measured = false;

export const dedicatedCpus: Section = {
  description: 'a trivial test with and without a dedicated CPU (reservation and shared cpuset rewrite), per run',
  async run(ctx) {
    if (measured) return ctx.log('measured already on the first database');
    measured = true;
    const imageDir = process.env.IMAGE_DIR ?? '/var/cache/test-orchestrator/images';
    const scratch = mkdtempSync(join(tmpdir(), 'orch-bench-cpus-'));
    const driver = new RemoteDriver('CONTAINER', { imageDir }, { info() {}, warn() {}, error() {} });
    const shape: EnvironmentShape = { pool: 'cpus', kind: 'CONTAINER', arch: 'x86_64', cpus: 1, memoryMb: 256, image: 'debian-bookworm', pids: 64 };
    const spec = (dedicated: number | undefined): RunSpec => ({
      testId: randomUUID(), attempt: 1, script: 'true', env: {}, timeoutMs: 60_000, services: [], artifactPaths: [], artifactDir: join(scratch, 'a'), maxOutputBytes: 1 << 20, dedicatedCpus: dedicated,
    });
    try {
      await driver.preflight(shape);
      const env = await driver.provision(randomUUID(), shape);
      const times: Record<'shared' | 'dedicated', number[]> = { shared: [], dedicated: [] };
      for (let i = 0; i < RUNS * 2; i++) {
        const kind = i % 2 === 0 ? 'shared' : 'dedicated';
        const t0 = now();
        const o = await driver.run(env, spec(kind === 'dedicated' ? 1 : undefined));
        times[kind].push(now() - t0);
        if (o.exitCode !== 0) throw new Error(`the run failed: ${o.stderr.slice(-300)}`);
        await driver.reset(env);
      }
      await driver.destroy(env);
      const s = stats(times.shared);
      const d = stats(times.dedicated);
      ctx.record({ key: 'run-shared', measure: `run of \`true\` without dedicated CPUs (shared cpuset group), ${RUNS} runs: p50`, value: s.p50, unit: 'ms', detail: `p95 ${fmtMs(s.p95)}` });
      ctx.record({ key: 'run-dedicated', measure: `run of \`true\` with one dedicated CPU (reserve, rewrite, own cpuset group), ${RUNS} runs: p50`, value: d.p50, unit: 'ms', detail: `p95 ${fmtMs(d.p95)}; difference of the p50s ${fmtMs(d.p50 - s.p50)}` });
    } finally {
      await driver.close();
      rmSync(scratch, { recursive: true, force: true });
    }
  },
};
