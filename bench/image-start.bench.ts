// What choosing an image costs at run time: the time of one trivial run (`true`, run + reset) in each
// default image, side by side on one environment, the run's image given per run (RunSpec.image) as a
// worker gives it, next to the pool's default image taken by the driver itself. The driver runs in a
// driver host, as in a worker. Independent of the database: measured once per bench run.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_IMAGES } from '../src/config/images';
import { RemoteDriver } from '../src/environments/remote/remote.driver';
import type { EnvironmentShape, RunImage, RunSpec } from '../src/environments/driver';
import { resolveImage } from '../src/images/store';
import { fmtMs, now, stats, type Section } from './bench-kit';

const RUNS = 60;
let measured = false;

export const imageStart: Section = {
  description: 'one trivial run (run + reset) in each default image, chosen per run, next to the pool default',
  async run(ctx) {
    if (measured) return ctx.log('measured already on the first database');
    measured = true;
    const imageDir = process.env.IMAGE_DIR ?? '/var/cache/test-orchestrator/images';
    const images: RunImage[] = [];
    for (const def of DEFAULT_IMAGES) {
      const v = await resolveImage(imageDir, def.name);
      if (!v) ctx.log(`image ${def.name} is not built in ${imageDir}: left out (npm run images builds it)`);
      else images.push({ name: v.name, digest: v.digest, rootfs: v.rootfs });
    }
    const scratch = mkdtempSync(join(tmpdir(), 'orch-bench-image-'));
    const driver = new RemoteDriver('CONTAINER', { imageDir }, { info() {}, warn() {}, error() {} });
    const shape: EnvironmentShape = { pool: 'images', kind: 'CONTAINER', arch: 'x86_64', cpus: 1, memoryMb: 512, image: 'debian-bookworm', pids: 64 };
    const spec = (image: RunImage | undefined): RunSpec => ({
      testId: randomUUID(), attempt: 1, script: 'true', image, env: {}, timeoutMs: 60_000, services: [], artifactPaths: [], artifactDir: join(scratch, 'a'), maxOutputBytes: 1 << 20,
    });
    try {
      await driver.preflight(shape);
      const env = await driver.provision(randomUUID(), shape);
      const variants: { label: string; image: RunImage | undefined }[] = [{ label: 'the pool default (debian-bookworm), taken by the driver', image: undefined }, ...images.map((i) => ({ label: `${i.name}, given per run`, image: i }))];
      const samples = variants.map(() => [] as number[]);
      // interleaved: each round runs every variant once, so drift on the machine hits all alike
      for (let round = 0; round < RUNS; round++) {
        for (const [i, v] of variants.entries()) {
          const t0 = now();
          const o = await driver.run(env, spec(v.image));
          await driver.reset(env);
          if (o.exitCode !== 0) throw new Error(`a run in ${v.label} failed: ${o.stderr.slice(-300)}`);
          samples[i].push(now() - t0);
        }
      }
      await driver.destroy(env);
      const base = stats(samples[0]).p50;
      variants.forEach((v, i) => {
        const s = stats(samples[i]);
        ctx.record({ key: `start-${i}`, measure: `run + reset of \`true\` in ${v.label}, ${RUNS} runs: p50`, value: s.p50, unit: 'ms', detail: `p95 ${fmtMs(s.p95)}; ${(s.p50 / base).toFixed(2)}x the pool default` });
      });
    } finally {
      await driver.close();
      rmSync(scratch, { recursive: true, force: true });
    }
  },
};
