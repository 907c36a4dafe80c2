// DATA_DIR is the orchestrator's user's alone (issue 6): an existing DATA_DIR open to everyone (0777,
// files 0666) is repaired at start, and what the database and Redis create is private too.
import assert from 'node:assert/strict';
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { spawnOrchestrator } from '../helpers/orchestrator-process';

/** Every entry below `dir` (links not followed) whose group or other bits are set. */
function openEntries(dir: string, except: string[] = []): string[] {
  const found: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const full = join(d, name);
      if (except.includes(full)) continue;
      const st = lstatSync(full);
      if (st.isSymbolicLink()) continue;
      if (st.isDirectory() ? (st.mode & 0o777) !== 0o700 : (st.mode & 0o077) !== 0) found.push(`${(st.mode & 0o7777).toString(8)} ${full}`);
      if (st.isDirectory()) walk(full);
    }
  };
  walk(dir);
  return found;
}

describe('DATA_DIR permissions', () => {
  const root = mkdtempSync(join(tmpdir(), 'orch-datadir-'));
  after(() => rmSync(root, { recursive: true, force: true }));

  it('an existing DATA_DIR open to everyone is made private at start; what is created is private; links are not followed', async () => {
    const dataDir = join(root, 'data');
    mkdirSync(join(dataDir, 'artifacts', 'ab'), { recursive: true });
    writeFileSync(join(dataDir, 'artifacts', 'ab', 'old-artifact'), 'env values and outputs');
    writeFileSync(join(dataDir, 'redis.log'), 'an old log\n');
    const outside = join(root, 'outside.txt');
    writeFileSync(outside, 'not ours to change');
    chmodSync(outside, 0o644);
    symlinkSync(outside, join(dataDir, 'artifacts', 'link-out'));
    for (const p of [dataDir, join(dataDir, 'artifacts'), join(dataDir, 'artifacts', 'ab')]) chmodSync(p, 0o777);
    for (const p of [join(dataDir, 'artifacts', 'ab', 'old-artifact'), join(dataDir, 'redis.log')]) chmodSync(p, 0o666);
    // a stored bundle: its tree keeps the modes its archive gave (the store itself is made private)
    const tree = join(dataDir, 'bundles', 'a'.repeat(64), 'tree');
    mkdirSync(join(tree, 'bin'), { recursive: true });
    writeFileSync(join(tree, 'bin', 'run.sh'), 'echo\n');
    chmodSync(join(tree, 'bin', 'run.sh'), 0o755);
    chmodSync(join(dataDir, 'bundles'), 0o755);

    const orch = await spawnOrchestrator('serve', { dataDir, env: { DATABASE_URL: undefined, REDIS_URL: undefined } });
    try {
      await orch.waitReady(90_000);
      assert.equal(lstatSync(dataDir).mode & 0o777, 0o700, 'DATA_DIR itself');
      const bundleTrees = [join(dataDir, 'bundles', 'a'.repeat(64))];
      assert.deepEqual(openEntries(dataDir, bundleTrees), [], 'entries open to other users after start');
      assert.equal(lstatSync(join(dataDir, 'bundles')).mode & 0o777, 0o700, 'the bundle store is private');
      assert.equal(lstatSync(join(tree, 'bin', 'run.sh')).mode & 0o777, 0o755, "a bundle's files keep their modes");
      assert.match(readFileSync(`/proc/${orch.pid}/status`, 'utf8'), /^Umask:\s+0077$/m);
      assert.equal(lstatSync(outside).mode & 0o777, 0o644, 'a link target outside DATA_DIR is untouched');
    } finally {
      await orch.stop();
    }
    assert.deepEqual(openEntries(dataDir, [join(dataDir, 'bundles', 'a'.repeat(64))]), [], 'entries open to other users after stop');
  });
});
