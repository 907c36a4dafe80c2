// The native runner (native/orch-runner.c): the sandbox's pid 1 that runs the script and records its
// wait status, as PERL_WAIT does (runner-script.ts) at a third of the CPU (measured on the 2-core dev
// host, 300 runs of a `true` script: perl runner 6.2-7.1 ms of CPU per run, this one 2.0-2.5 ms, the
// script alone in sh 1.1 ms). It is compiled once per host and source (`cc -static`, ~0.3 s) into a
// cache directory and bound read-only into every sandbox at /run/orchestrator-runner, so it needs
// nothing of the image: images without perl get exact exit statuses too. Without a C compiler (Debian
// packages gcc and libc6-dev) the perl runner is used, and the driver says so once.

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants as fsConstants, existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { prepareSecureDir } from './sandbox-user';

export { SANDBOX_RUNNER } from './bwrap-args';
import type { DriverLogger } from './image';

const SOURCE = path.join('native', 'orch-runner.c');
const COMPILERS = ['/usr/bin/cc', '/usr/bin/gcc'];

/** Where compiled runners are kept when the configuration names no place: one directory per host (and user). */
export function defaultNativeDir(): string {
  const uid = process.getuid?.();
  return uid === 0 ? '/run/test-orchestrator/native' : path.join(os.tmpdir(), `test-orchestrator-${uid ?? 'user'}`, 'native');
}

/** The C source, found beside this file (src/) or in the source tree above dist/. */
export function findRunnerSource(from: string = __dirname): string | null {
  const beside = path.join(from, SOURCE);
  if (existsSync(beside)) return beside;
  let dir = from;
  for (let i = 0; i < 8; i++) {
    const candidate = path.join(dir, 'src', 'environments', 'container', SOURCE);
    if (existsSync(candidate)) return candidate;
    const up = path.dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return null;
}

/**
 * The path of the compiled runner for this source and architecture in `dir`, compiled now when it is
 * not there; null (with the reason) when it cannot be had. `secure`: the driver runs as root, so the
 * directory is root's and not writable by others (sandbox-user.ts prepareSecureDir) and a runner found
 * there is trusted only if root owns it and nobody else can write it.
 */
export async function ensureNativeRunner(o: { dir: string; secure: boolean }): Promise<{ path: string } | { problem: string }> {
  const source = findRunnerSource();
  if (!source) return { problem: `the runner's source (${SOURCE}) is not in this installation` };
  const text = await fs.readFile(source);
  const digest = createHash('sha256').update(text).update(`\0${process.arch}`).digest('hex').slice(0, 16);
  const target = path.join(o.dir, `orch-runner-${digest}`);
  const owner = process.getuid?.() ?? -1;
  const usable = async () => {
    const st = await fs.lstat(target).catch(() => null);
    return st !== null && st.isFile() && st.uid === owner && (st.mode & 0o022) === 0 && (st.mode & 0o005) === 0o005;
  };
  if (await usable()) return { path: target };
  let compiler: string | null = null;
  for (const c of COMPILERS) {
    if (await fs.access(c, fsConstants.X_OK).then(() => true, () => false)) {
      compiler = c;
      break;
    }
  }
  if (!compiler) return { problem: `no C compiler (${COMPILERS.join(', ')}; Debian packages gcc and libc6-dev)` };
  if (o.secure) await prepareSecureDir(o.dir);
  else await fs.mkdir(o.dir, { recursive: true, mode: 0o755 });
  const tmp = `${target}.${process.pid}.${Date.now()}.tmp`;
  try {
    await new Promise<void>((resolve, reject) => {
      execFile(compiler!, ['-static', '-O2', '-o', tmp, source], { env: { PATH: '/usr/bin:/bin' }, cwd: '/', timeout: 120_000 }, (err, _out, stderr) => {
        if (err) reject(new Error(`${path.basename(compiler!)} -static failed: ${String(stderr).trim().split('\n').slice(-3).join(' / ') || err.message}`));
        else resolve();
      });
    });
    await fs.chmod(tmp, 0o755);
    await fs.rename(tmp, target); // atomic: a driver compiling at the same time renames the same bytes
  } catch (err) {
    await fs.rm(tmp, { force: true }).catch(() => undefined); // the problem below says what failed
    return { problem: (err as Error).message };
  }
  if (!(await usable())) return { problem: `${target} is not a root-owned file only its owner can write` };
  return { path: target };
}

/** The runner of one driver instance: made once (preflight or the first run), checked to be there before each run. */
export class NativeRunner {
  private pending: Promise<string | null> | null = null;
  private warned = false;

  constructor(private readonly o: { enabled: boolean; dir: string; secure: boolean; log: DriverLogger }) {}

  /** The host path to bind at SANDBOX_RUNNER, or null: the perl runner. */
  async get(): Promise<string | null> {
    if (!this.o.enabled) return null;
    const known = this.pending ? await this.pending : undefined;
    if (known && existsSync(known)) return known;
    if (known) this.pending = null; // removed meanwhile (a cleaned /run): made again
    this.pending ??= ensureNativeRunner(this.o).catch((err: Error) => ({ problem: err.message })).then((r) => {
      if ('path' in r) return r.path;
      if (!this.warned) {
        this.warned = true;
        this.o.log.warn({ reason: r.problem }, 'no native runner: sandboxes run the perl runner (about 4 ms more CPU per run; images without perl get ambiguous exit statuses)');
      }
      return null;
    });
    return this.pending;
  }
}
