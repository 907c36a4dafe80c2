// How long an environment takes to reset after a test that wrote 1 GB and 100,000 files (issue 6:
// a fresh loop-mounted filesystem instead of deleting them), next to the reset after a test that
// wrote one small file (the per-test cost every run pays). The driver runs in a driver host, as in
// a worker. Independent of the database: measured once per bench run.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RemoteDriver } from '../src/environments/remote/remote.driver';
import type { EnvironmentShape, RunSpec } from '../src/environments/driver';
import { fmtMs, now, stats, type Section } from './bench-kit';

const BIG_RUNS = 2;
const SMALL_RUNS = 50;
const DISK_MB = 2048;
const BIG_SCRIPT = 'head -c 1073741824 /dev/zero > big && mkdir files && cd files && seq 1 100000 | xargs touch && echo wrote';

let measured = false;

export const diskReset: Section = {
  description: 'reset of an environment after a test that wrote 1 GB and 100,000 files, and after a small test',
  async run(ctx) {
    if (measured) return ctx.log('measured already on the first database');
    measured = true;
    const imageDir = process.env.IMAGE_DIR ?? '/var/cache/test-orchestrator/images';
    const scratch = mkdtempSync(join(tmpdir(), 'orch-bench-disk-'));
    const driver = new RemoteDriver('CONTAINER', { imageDir }, { info() {}, warn() {}, error() {} });
    const shape: EnvironmentShape = { pool: 'disk', kind: 'CONTAINER', arch: 'x86_64', cpus: 1, memoryMb: 512, image: 'debian-bookworm', pids: 64, diskMb: DISK_MB };
    const spec = (script: string): RunSpec => ({
      testId: randomUUID(), attempt: 1, script, env: {}, timeoutMs: 600_000, services: [], artifactPaths: [], artifactDir: join(scratch, 'a'), maxOutputBytes: 1 << 20,
    });
    try {
      await driver.preflight(shape);
      const env = await driver.provision(randomUUID(), shape);
      const big: number[] = [];
      for (let i = 0; i < BIG_RUNS; i++) {
        ctx.log(`writing 1 GB and 100,000 files (${i + 1}/${BIG_RUNS})`);
        const o = await driver.run(env, spec(BIG_SCRIPT));
        if (o.exitCode !== 0) throw new Error(`the big test failed: ${o.stderr.slice(-300)}`);
        const t0 = now();
        await driver.reset(env);
        big.push(now() - t0);
      }
      const small: number[] = [];
      for (let i = 0; i < SMALL_RUNS; i++) {
        const o = await driver.run(env, spec('echo x > out.txt'));
        if (o.exitCode !== 0) throw new Error(`the small test failed: ${o.stderr.slice(-300)}`);
        const t0 = now();
        await driver.reset(env);
        small.push(now() - t0);
      }
      await driver.destroy(env);
      const b = stats(big);
      const s = stats(small);
      ctx.record({ key: 'reset-big', measure: `reset after a test that wrote 1 GB and 100,000 files (diskMb ${DISK_MB}), ${BIG_RUNS} runs: mean`, value: b.mean, unit: 'ms', detail: `min ${fmtMs(b.min)}, max ${fmtMs(b.max)}` });
      ctx.record({ key: 'reset-small', measure: `reset after a test that wrote one small file, ${SMALL_RUNS} runs: p50`, value: s.p50, unit: 'ms', detail: `p95 ${fmtMs(s.p95)}` });
    } finally {
      await driver.close();
      rmSync(scratch, { recursive: true, force: true });
    }
  },
};
