// STAND-IN for bundles (issue 9; the bundles branch implements them): a 10 MB, 1,000-file tree copied into
// /work from the host before each run (`cp -a`), thrown away by the reset. It measures what a plain
// copy per test costs, not what bundles cost: after merging, replace copyInto() by a plan's bundle
// (TODO for the lead: driver alone with RunSpec's bundle, end to end with SubmitPlanInput.bundle).
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const STANDIN_FILES = 1_000;
export const STANDIN_BYTES = 10 * 1024 * 1024;
export const STANDIN_LABEL = 'STAND-IN: 10 MB, 1,000 files copied into /work (cp -a) before each run; bundles will replace it';

/** Makes the tree (20 directories of 50 files of 10 KiB, 0644 in 0755 dirs); returns it and its remover. */
export function makeStandinTree(): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'orch-bench-bundle-'));
  const size = Math.floor(STANDIN_BYTES / STANDIN_FILES);
  const data = Buffer.alloc(size, 'x');
  for (let d = 0; d < 20; d++) {
    const sub = join(dir, 'tree', `d${d}`);
    mkdirSync(sub, { recursive: true, mode: 0o755 });
    for (let f = 0; f < STANDIN_FILES / 20; f++) writeFileSync(join(sub, `f${f}.dat`), data, { mode: 0o644 });
  }
  return { dir: join(dir, 'tree'), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** `cp -a TREE/. DEST/`. */
export function copyInto(tree: string, dest: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/cp', ['-a', '--', `${tree}/.`, `${dest}/`], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (c: Buffer) => (err += c.toString('utf8')));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`cp -a into ${dest}: exit ${code}: ${err.trim()}`))));
  });
}
