// What a bundle costs each test: the private copy of a 10 MB, 1,000-file bundle every run starts with
// (an overlay mounted over the work disk, see src/environments/container/work-inputs.ts), as the
// difference between runs (and resets) with and without it, in a driver host as in a worker; next to
// it what a plain copy of the same files costs, the driver's one-time copy for the sandbox user, and
// an upload of the archive (unpacked into the store). Independent of the database: measured once.
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { copyTree } from '../src/environments/container/bundle-lowers';
import { MountHelper } from '../src/environments/container/mount-helper';
import { createWorkFs, destroyWorkFs, type WorkFs } from '../src/environments/container/work-fs';
import type { EnvironmentShape, RunSpec } from '../src/environments/driver';
import { RemoteDriver } from '../src/environments/remote/remote.driver';
import { BundleStore } from '../src/infra/bundle/bundle-store';
import { BUNDLE_FILES, bundleTar } from './bench-bundle';
import { fmtMs, now, stats, type Section } from './bench-kit';

const RUNS = 60;

let measured = false;

export const bundleCost: Section = {
  description: 'per-test cost of the private copy of a 10 MB, 1,000-file bundle (overlay), against a plain copy',
  async run(ctx) {
    if (measured) return ctx.log('measured already on the first database');
    measured = true;
    const imageDir = process.env.IMAGE_DIR ?? '/var/cache/test-orchestrator/images';
    const scratch = mkdtempSync(join(tmpdir(), 'orch-bench-bundle-'));
    const driver = new RemoteDriver('CONTAINER', { imageDir }, { info() {}, warn() {}, error() {} });
    const shape: EnvironmentShape = { pool: 'bundle', kind: 'CONTAINER', arch: 'x86_64', cpus: 1, memoryMb: 512, image: 'debian-bookworm', pids: 64, diskMb: 2048 };
    try {
      const tar = bundleTar();
      const store = new BundleStore(join(scratch, 'store'));
      const limits = { maxArchiveBytes: 1 << 30, maxUnpackedBytes: 1 << 30, maxEntries: 100_000 };
      const uploads: number[] = [];
      const gz = gzipSync(tar, { level: 1 });
      let id = '';
      for (let i = 0; i < 5; i++) {
        const t0 = now();
        id = (await store.put(Readable.from([i % 2 ? tar : gz]), limits)).id;
        uploads.push(now() - t0);
      }
      const bundleDir = store.treeOf(id);

      await driver.preflight(shape);
      const env = await driver.provision(randomUUID(), shape);
      const spec = (script: string, withBundle: boolean): RunSpec => ({
        testId: randomUUID(), attempt: 1, script, env: {}, timeoutMs: 60_000, services: [], artifactPaths: [], artifactDir: join(scratch, 'a'), maxOutputBytes: 1 << 20,
        ...(withBundle ? { inputs: { bundleDir, files: [] } } : {}),
      });
      const t0 = now();
      const first = await driver.run(env, spec('./run.sh', true));
      const firstMs = now() - t0;
      if (first.exitCode !== 0) throw new Error(`the bundle's script failed: ${first.stderr.slice(-300)}`);
      await driver.reset(env);
      const times = { run: [[], []] as number[][], reset: [[], []] as number[][] };
      // interleaved, so that a slower moment of the machine weighs on both alike
      for (let i = 0; i < RUNS; i++) {
        for (const b of [0, 1]) {
          const r0 = now();
          const o = await driver.run(env, spec('true', b === 1));
          times.run[b].push(now() - r0);
          if (o.exitCode !== 0) throw new Error(`a run failed: ${o.stderr.slice(-300)}`);
          const s0 = now();
          await driver.reset(env);
          times.reset[b].push(now() - s0);
        }
      }
      // a test that changes one bundle file (a copy-up of 10 KiB)
      const write: number[] = [];
      for (let i = 0; i < 20; i++) {
        const w0 = now();
        await driver.run(env, spec('echo x >> dir3/file7.bin', true));
        write.push(now() - w0);
        await driver.reset(env);
      }
      await driver.destroy(env);
      // what a copy per test would cost instead: `cp -a` (the quickest way) into a work disk like an
      // environment's (a loop-mounted ext4), and the driver's own copy (once per bundle)
      const disk: WorkFs = { image: join(scratch, 'disk.img'), mountPoint: join(scratch, 'disk'), sizeMb: 2048, ctlMountPoint: join(scratch, 'ctl'), ctlSizeMb: 16 };
      await createWorkFs(disk);
      const copies: number[] = [];
      const driverCopies: number[] = [];
      for (let i = 0; i < 10; i++) {
        const c0 = now();
        execFileSync('cp', ['-a', bundleDir, join(disk.mountPoint, `cp-${i}`)]);
        copies.push(now() - c0);
        rmSync(join(disk.mountPoint, `cp-${i}`), { recursive: true, force: true });
        const d0 = now();
        await copyTree(bundleDir, join(scratch, `copy-${i}`), null);
        driverCopies.push(now() - d0);
        rmSync(join(scratch, `copy-${i}`), { recursive: true, force: true });
      }
      // the overlay's own steps, without a run around them: reserve, mount, umount (mount-helper.ts)
      const helper = new MountHelper();
      const lowerCopy = join(scratch, 'lower');
      const lowerBytes = await copyTree(bundleDir, lowerCopy, null);
      const steps: number[] = [];
      for (let i = 0; i < 40; i++) {
        const base = join(disk.mountPoint, '.inputs');
        mkdirSync(join(base, 'upper'), { recursive: true });
        mkdirSync(join(base, 'work'), { recursive: true });
        const m0 = now();
        await helper.reserve(join(base, 'reserve'), lowerBytes);
        await helper.mountOverlay(disk.mountPoint, `lowerdir=${lowerCopy},upperdir=${join(base, 'upper')},workdir=${join(base, 'work')},volatile`);
        await helper.unmount(disk.mountPoint);
        steps.push(now() - m0);
        rmSync(base, { recursive: true, force: true });
      }
      helper.close();
      await destroyWorkFs(disk);

      const runs = times.run.map(stats);
      const resets = times.reset.map(stats);
      const cost = runs[1].p50 - runs[0].p50 + (resets[1].p50 - resets[0].p50);
      const c = stats(copies);
      ctx.record({ key: 'bundle-per-test', measure: `per-test cost of a private copy of a 10 MB, ${BUNDLE_FILES}-file bundle (overlay): run + reset p50, with less without`, value: cost, unit: 'ms', detail: `run ${fmtMs(runs[1].p50)} vs ${fmtMs(runs[0].p50)}, reset ${fmtMs(resets[1].p50)} vs ${fmtMs(resets[0].p50)}; ${RUNS} runs each` });
      ctx.record({ key: 'bundle-plain-copy', measure: `a plain copy of the same files with cp -a into a work disk (what the overlay saves each test), ${copies.length} copies: p50`, value: c.p50, unit: 'ms', detail: `p95 ${fmtMs(c.p95)}` });
      ctx.record({ key: 'bundle-first-run', measure: 'first run of the bundle on a driver (its copy for the sandbox user, once), whole run', value: firstMs, unit: 'ms', detail: `the copy alone p50 ${fmtMs(stats(driverCopies).p50)}` });
      ctx.record({ key: 'bundle-copy-up', measure: 'a run that appends to one bundle file (copy-up of 10 KiB): run p50', value: stats(write).p50, unit: 'ms', detail: `vs ${fmtMs(runs[1].p50)} for \`true\`` });
      const st = stats(steps);
      ctx.record({ key: 'bundle-overlay-steps', measure: 'the overlay alone: reserve the bundle\'s size, mount, umount (system calls in the helper), 40 times: p50', value: st.p50, unit: 'ms', detail: `p95 ${fmtMs(st.p95)}` });
      const u = stats(uploads);
      ctx.record({ key: 'bundle-upload', measure: 'store an upload of the bundle (hash, gunzip or not, check every entry, unpack): p50 of 5', value: u.p50, unit: 'ms', detail: `tar ${(tar.length / 1e6).toFixed(1)} MB, gzip -1 ${(gz.length / 1e6).toFixed(1)} MB` });
    } finally {
      await driver.close();
      rmSync(scratch, { recursive: true, force: true });
    }
  },
};
