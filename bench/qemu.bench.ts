// The QEMU pool's figures next to a container's: a VM's cold boot (provision), a test's start on a warm
// VM (from run() to its first output byte), the reset of a warm VM (QEMU_WARM_RESET: the guest's
// overlay and /work thrown away), the default reset (the spare VM swapped in; and without spares, a
// cold boot), and a trivial test's run + reset on each driver. The drivers run in a driver host, as in
// a worker, but for the default reset's figures: those wait for the spare's boot, which only the
// driver itself can tell. KVM when it boots a guest here, else TCG (the driver says which in its log).
// Independent of the database: measured once per bench run.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EnvironmentKind, EnvironmentShape, RunSpec } from '../src/environments/driver';
import { QemuDriver } from '../src/environments/qemu/driver';
import { RemoteDriver } from '../src/environments/remote/remote.driver';
import { fmtMs, now, stats, type Section } from './bench-kit';

const BOOTS = 3;
const RUNS = 15;
let measured = false;

export const qemuPool: Section = {
  description: 'QEMU: cold boot, warm start, reset, a trivial test next to a container',
  async run(ctx) {
    if (measured) return ctx.log('measured already on the first database');
    measured = true;
    const imageDir = process.env.IMAGE_DIR ?? '/var/cache/test-orchestrator/images';
    const scratch = mkdtempSync(join(tmpdir(), 'orch-bench-qemu-'));
    let accel = 'unknown';
    const logger = { info: (o: object, m: string) => { if ('accel' in o) accel = String((o as { accel: string }).accel); void m; }, warn() {}, error() {} };
    const shapeOf = (kind: EnvironmentKind): EnvironmentShape => ({ pool: kind.toLowerCase(), kind, arch: 'x86_64', cpus: 1, memoryMb: 512, image: 'debian-bookworm', pids: 256 });
    const spec = (script: string, onOutput?: RunSpec['onOutput']): RunSpec => ({
      testId: randomUUID(), attempt: 1, script, env: {}, timeoutMs: 60_000, services: [], artifactPaths: [], artifactDir: join(scratch, 'a'), maxOutputBytes: 1 << 20, onOutput,
    });
    // warm resets measured here (QEMU_WARM_RESET=true); the default's reset is a fresh VM, measured below
    const qemu = new RemoteDriver('QEMU', { imageDir, warmReset: true }, logger);
    const container = new RemoteDriver('CONTAINER', { imageDir }, logger);
    try {
      await qemu.preflight(shapeOf('QEMU'));
      const boots: number[] = [];
      let env = null;
      for (let i = 0; i < BOOTS; i++) {
        const t0 = now();
        const e = await qemu.provision(randomUUID(), shapeOf('QEMU'));
        boots.push(now() - t0);
        if (env) await qemu.destroy(env);
        env = e;
        ctx.log(`cold boot ${i + 1}/${BOOTS}: ${fmtMs(boots[i])}`);
      }
      const b = stats(boots);
      ctx.record({ key: 'qemu-boot', measure: `QEMU cold boot (provision to the agent's READY), ${BOOTS} boots: p50`, value: b.p50, unit: 'ms', detail: `max ${fmtMs(b.max)}; accelerator ${accel}` });

      const starts: number[] = [];
      const resets: number[] = [];
      const trivial: Record<string, number[]> = { QEMU: [], CONTAINER: [] };
      for (let i = 0; i < RUNS; i++) {
        const t0 = now();
        let first = 0;
        const o = await qemu.run(env!, spec('echo started', () => (first ||= now())));
        if (o.exitCode !== 0 || !first) throw new Error(`a warm start failed: ${o.stderr.slice(-300)}`);
        starts.push(first - t0);
        const r0 = now();
        await qemu.reset(env!);
        resets.push(now() - r0);
      }
      const s = stats(starts);
      ctx.record({ key: 'qemu-start', measure: `QEMU warm start (run() to the test's first output byte), ${RUNS} runs: p50`, value: s.p50, unit: 'ms', detail: `p95 ${fmtMs(s.p95)}` });
      const r = stats(resets);
      ctx.record({ key: 'qemu-reset', measure: `QEMU reset of a warm VM (QEMU_WARM_RESET=true: no cold boot), ${RUNS} resets: p50`, value: r.p50, unit: 'ms', detail: `p95 ${fmtMs(r.p95)}` });

      await container.preflight(shapeOf('CONTAINER'));
      const cenv = await container.provision(randomUUID(), shapeOf('CONTAINER'));
      for (let i = 0; i < RUNS; i++) {
        for (const [kind, d, e] of [['QEMU', qemu, env!], ['CONTAINER', container, cenv]] as const) {
          const t0 = now();
          const o = await d.run(e, spec('true'));
          await d.reset(e);
          if (o.exitCode !== 0) throw new Error(`a trivial test failed on ${kind}: ${o.stderr.slice(-300)}`);
          trivial[kind].push(now() - t0);
        }
      }
      await qemu.destroy(env!);
      await container.destroy(cenv);
      // the default (QEMU_WARM_RESET=false): each reset gives the next test a VM no test ran in
      const fresh = new QemuDriver({ imageDir, logger });
      try {
        const fenv = await fresh.provision(randomUUID(), shapeOf('QEMU'));
        const swaps: number[] = [];
        const busyStarts: number[] = [];
        for (let i = 0; i < 5; i++) {
          await fresh.run(fenv, spec('true'));
          while (!fresh.sparePid(fenv)) await new Promise((r) => setTimeout(r, 20));
          const t0 = now();
          await fresh.reset(fenv);
          swaps.push(now() - t0);
          // the next test, while the next spare boots beside it
          const s0 = now();
          let first = 0;
          await fresh.run(fenv, spec('echo started', () => (first ||= now())));
          busyStarts.push(first - s0);
          await fresh.reset(fenv);
        }
        const sw = stats(swaps);
        ctx.record({ key: 'qemu-reset-spare', measure: 'QEMU reset by default (the spare VM, booted meanwhile, swapped in), 5 resets: p50', value: sw.p50, unit: 'ms', detail: `max ${fmtMs(sw.max)}` });
        const bs = stats(busyStarts);
        ctx.record({ key: 'qemu-start-spare-booting', measure: 'QEMU start (run() to first output byte) right after a swap, the next spare booting beside it, 5 runs: p50', value: bs.p50, unit: 'ms', detail: `max ${fmtMs(bs.max)}` });
        const b2b: number[] = [];
        for (let i = 0; i < 3; i++) {
          const t0 = now();
          await fresh.run(fenv, spec('true'));
          await fresh.reset(fenv);
          b2b.push(now() - t0);
        }
        const bb = stats(b2b);
        ctx.record({ key: 'qemu-trivial-default', measure: 'trivial test back to back (run + reset) on QEMU by default: bound by the spare\'s boot, 3 runs: p50', value: bb.p50, unit: 'ms', detail: `max ${fmtMs(bb.max)}` });
        await fresh.destroy(fenv);
      } finally {
        await fresh.close();
      }
      const noSpare = new QemuDriver({ imageDir, logger, spareVms: false });
      try {
        const nenv = await noSpare.provision(randomUUID(), shapeOf('QEMU'));
        const cold: number[] = [];
        for (let i = 0; i < 3; i++) {
          await noSpare.run(nenv, spec('true'));
          const t0 = now();
          await noSpare.reset(nenv);
          cold.push(now() - t0);
        }
        await noSpare.destroy(nenv);
        const c3 = stats(cold);
        ctx.record({ key: 'qemu-reset-fresh', measure: 'QEMU reset with QEMU_SPARE_VMS=false (stop, cold boot), 3 resets: p50', value: c3.p50, unit: 'ms', detail: `max ${fmtMs(c3.max)}` });
      } finally {
        await noSpare.close();
      }
      const q = stats(trivial.QEMU);
      const c = stats(trivial.CONTAINER);
      ctx.record({ key: 'qemu-trivial', measure: `trivial test (\`true\`, run + reset) on QEMU, ${RUNS} runs: p50`, value: q.p50, unit: 'ms', detail: `p95 ${fmtMs(q.p95)}; ${(q.p50 / c.p50).toFixed(1)}x the container` });
      ctx.record({ key: 'container-trivial', measure: `trivial test (\`true\`, run + reset) in a container, ${RUNS} runs: p50`, value: c.p50, unit: 'ms', detail: `p95 ${fmtMs(c.p95)}` });
    } finally {
      await qemu.close();
      await container.close();
      rmSync(scratch, { recursive: true, force: true });
    }
  },
};
