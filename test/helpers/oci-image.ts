// An OCI image made by the tests themselves, offline, with umoci (and skopeo for the archives):
// layer 1 holds busybox (from the Debian package busybox-static: /bin/busybox and sh, ls, cat links)
// and a.txt, b.txt; layer 2 adds c.txt and whites out a.txt. Its config sets FOO and PATH.

import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export const BUSYBOX = '/bin/busybox';

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status}): ${r.stderr}`);
  return r.stdout;
}

/** Why the OCI tests cannot run here (a missing tool), or null. */
export function ociToolsMissing(): string | null {
  for (const [tool, pkg] of [['/usr/bin/umoci', 'umoci'], ['/usr/bin/skopeo', 'skopeo'], [BUSYBOX, 'busybox-static']]) {
    if (!existsSync(tool)) return `${tool} missing (apt-get install ${pkg})`;
  }
  return null;
}

export interface TestOciImage {
  /** The OCI layout directory; the image is tagged "v2" (and its first layer alone "v1"). */
  layout: string;
  ociArchive: string;
  dockerArchive: string;
  /** The manifest's layers (media types and digests), for checks that it really is two layers. */
  layers: { digest: string; mediaType: string }[];
  /** The entries of the second layer's tar. */
  secondLayerEntries: string[];
}

/** Makes the image in `dir` (which must exist). */
export function makeTestOciImage(dir: string): TestOciImage {
  const layout = path.join(dir, 'layout');
  const bundle = path.join(dir, 'bundle');
  run('umoci', ['init', '--layout', layout]);
  run('umoci', ['new', '--image', `${layout}:base`]);
  run('umoci', ['unpack', '--image', `${layout}:base`, bundle]);
  const root = path.join(bundle, 'rootfs');
  run('mkdir', ['-p', path.join(root, 'bin')]);
  copyFileSync(BUSYBOX, path.join(root, 'bin', 'busybox'));
  for (const applet of ['sh', 'ls', 'cat', 'echo', 'sleep', 'env']) symlinkSync('busybox', path.join(root, 'bin', applet));
  writeFileSync(path.join(root, 'a.txt'), 'layer one a\n');
  writeFileSync(path.join(root, 'b.txt'), 'layer one b\n');
  run('umoci', ['repack', '--image', `${layout}:v1`, bundle]);
  rmSync(bundle, { recursive: true, force: true });
  run('umoci', ['unpack', '--image', `${layout}:v1`, bundle]);
  unlinkSync(path.join(root, 'a.txt'));
  writeFileSync(path.join(root, 'c.txt'), 'layer two c\n');
  run('umoci', ['repack', '--image', `${layout}:v2`, bundle]);
  rmSync(bundle, { recursive: true, force: true });
  run('umoci', ['config', '--image', `${layout}:v2`, '--config.env', 'FOO=from-oci', '--config.env', 'PATH=/bin']);
  run('umoci', ['gc', '--layout', layout]);

  const index = JSON.parse(readFileSync(path.join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
  const entry = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === 'v2')!;
  const blob = (d: string) => path.join(layout, 'blobs', 'sha256', d.slice('sha256:'.length));
  const manifest = JSON.parse(readFileSync(blob(entry.digest), 'utf8')) as { layers: { digest: string; mediaType: string }[] };
  const secondLayerEntries = run('tar', ['-tzf', blob(manifest.layers[1].digest)]).split('\n').filter(Boolean);

  const ociArchive = path.join(dir, 'image-oci.tar');
  const dockerArchive = path.join(dir, 'image-docker.tar');
  run('skopeo', ['--insecure-policy', 'copy', '--quiet', `oci:${layout}:v2`, `oci-archive:${ociArchive}:v2`]);
  run('skopeo', ['--insecure-policy', 'copy', '--quiet', `oci:${layout}:v2`, `docker-archive:${dockerArchive}:test/img:v2`]);
  return { layout, ociArchive, dockerArchive, layers: manifest.layers, secondLayerEntries };
}
