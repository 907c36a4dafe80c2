// Image build times (issue 8), in a fresh temp IMAGE_DIR: the base (debootstrap of bookworm minbase),
// an image on top of it with one package (python3-yaml: a copy of the base, apt-get update and
// install), and the import of a small two-layer OCI image made here (skopeo copy + umoci unpack).
// The Debian ones are skipped, saying why, where the mirror cannot be reached; all need root.
// Independent of the database: measured once per bench run.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ImageDefinition } from '../src/config/images';
import { buildImage, debianMirrorFor } from '../src/images';
import { makeTestOciImage, ociToolsMissing } from '../test/helpers/oci-image';
import { fmtBytes, now, type Section } from './bench-kit';

let measured = false;

/** Can the mirror be reached (its Release file answers within 10 s)? The reason when not. */
async function mirrorUnreachable(mirror: string): Promise<string | null> {
  try {
    const res = await fetch(`${mirror}/dists/bookworm/Release`, { method: 'HEAD', signal: AbortSignal.timeout(10_000) });
    return res.ok ? null : `${mirror} answers HTTP ${res.status}`;
  } catch (e) {
    return `${mirror} is unreachable (${(e as Error).message})`;
  }
}

export const imageBuilds: Section = {
  description: 'image build times: the base (debootstrap), a derived image with one package, an OCI import',
  async run(ctx) {
    if (measured) return ctx.log('measured already on the first database');
    measured = true;
    if (process.getuid?.() !== 0) return ctx.log('skipped: image builds need root');
    const scratch = mkdtempSync(join(tmpdir(), 'orch-bench-images-'));
    const imageDir = join(scratch, 'images');
    const logger = { info() {}, warn: (_o: object, m: string) => ctx.log(`warning: ${m}`), error: (_o: object, m: string) => ctx.log(m) };
    const build = async (defs: ImageDefinition[], name: string, key: string, measure: string) => {
      const t0 = now();
      const image = await buildImage(imageDir, defs, name, { logger, onProgress: (p) => !p.toolLine && ctx.log(p.message) });
      ctx.record({ key, measure, value: now() - t0, unit: 'ms', detail: `${fmtBytes(image.sizeBytes)}` });
    };
    try {
      const base: ImageDefinition = { name: 'base', from: 'debian:bookworm', source: { type: 'debian', suite: 'bookworm' }, packages: [], env: {} };
      const derived: ImageDefinition = { name: 'derived', from: 'image:base', source: { type: 'image', name: 'base' }, packages: ['python3-yaml'], env: {} };
      const mirror = debianMirrorFor({});
      const why = await mirrorUnreachable(mirror);
      if (why) ctx.log(`Debian builds skipped: ${why}`);
      else {
        await build([base], 'base', 'build-base', `base image: debootstrap --variant=minbase bookworm (${mirror})`);
        await build([base, derived], 'derived', 'build-derived', 'derived image: a copy of the base + apt-get install python3-yaml');
      }
      const missing = ociToolsMissing();
      if (missing) ctx.log(`OCI import skipped: ${missing}`);
      else {
        const made = makeTestOciImage(scratch);
        const imported: ImageDefinition = { name: 'imported', from: `oci-archive:${made.ociArchive}:v2`, source: { type: 'oci-archive', path: made.ociArchive, tag: 'v2' }, packages: [], env: {} };
        await build([imported], 'imported', 'build-oci', 'OCI import: a two-layer busybox image from an oci-archive (skopeo copy, umoci unpack)');
      }
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  },
};
