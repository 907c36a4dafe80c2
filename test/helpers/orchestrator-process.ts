/**
 * The orchestrator as a real process: `node dist/src/main.js <command>` with an explicit environment,
 * its output captured, its readiness awaited over HTTP, and its end observed (exit code and signal).
 *
 * - The environment is built from scratch (a few host variables such as PATH and HOME, then the
 *   caller's): a DATABASE_URL or REDIS_URL of the shell running the tests never leaks in.
 * - Nothing outlives the test process: every process started here is SIGKILLed (with its embedded
 *   redis-server) when the test process exits, and a reaper SIGTERMs it if the test process is
 *   itself killed. `stop()` falls back to SIGKILL after its deadline.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { findFreePort, isProcessAlive, safeKill, sleep, spawnReaper, tailLines, waitForPidExit } from '../../src/infra/process-utils';

/** The compiled entry point: this file runs from dist/test/helpers. */
export const MAIN_JS = resolve(__dirname, '..', '..', 'src', 'main.js');

/** Host variables passed through; everything else comes from the caller. */
const PASSED_THROUGH = ['PATH', 'HOME', 'TMPDIR', 'LANG', 'XDG_CACHE_HOME', 'IMAGE_DIR', 'DEBIAN_MIRROR'];

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** true when stop() had to SIGKILL it after its deadline */
  killed: boolean;
  /** milliseconds from the stop signal (or from the spawn for runOrchestrator) to the exit */
  ms: number;
  /**
   * Pids of processes it left running that this helper then killed: its embedded redis-server (still
   * alive 2 s after the exit). A clean shutdown leaves this empty.
   */
  leftBehind: number[];
}

export interface SpawnOptions {
  /** Variables of the child (undefined removes a passed-through one). PORT, HOST, DATA_DIR and LOG_LEVEL have defaults. */
  env?: Record<string, string | undefined>;
  /** Default: a fresh temp dir, removed by `cleanup()`. */
  dataDir?: string;
  /** Default: a free loopback port. */
  port?: number;
  /** Default: "info" (the log is what a failure message quotes). */
  logLevel?: string;
  /** Extra arguments after the command. */
  args?: string[];
  /**
   * Run it as `npm start` does: under a shell, in a process group of its own, so that `killGroup()`
   * kills both and the orchestrator, orphaned, is left to init to reap (a zombie meanwhile). `pid` is
   * the orchestrator's (node), not the shell's.
   */
  inGroup?: boolean;
}

export interface OrchestratorProcess {
  readonly pid: number;
  readonly port: number;
  /** http://127.0.0.1:PORT */
  readonly url: string;
  readonly dataDir: string;
  stdout(): string;
  stderr(): string;
  /** Both streams, for failure messages (the last lines). */
  log(lines?: number): string;
  /** Resolves when the process has exited. */
  readonly exited: Promise<Exit>;
  hasExited(): boolean;
  /** Polls GET /readyz until it answers 200; fails with the captured log on exit or timeout (and kills the process). */
  waitReady(timeoutMs?: number): Promise<void>;
  /** SIGKILL of its process group (with `inGroup`: the shell and the orchestrator), as a supervisor or a terminal would; does not wait. */
  killGroup(): void;
  /** Sends `signal`, waits up to `timeoutMs`, then SIGKILLs (process and its embedded Redis). Idempotent. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<Exit>;
  /** Removes the data directory if this helper created it. */
  cleanup(): void;
}

const live = new Set<OrchestratorProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const p of live) {
      safeKill(p.pid, 'SIGKILL');
      killEmbeddedRedis(p.dataDir, p.pid, true);
    }
  });
}

/** The redis-server this orchestrator pid started in `dataDir`, if its pid file says so and it still runs. */
export function embeddedRedisPid(dataDir: string, ownerPid?: number): number | undefined {
  let text: string;
  try {
    text = readFileSync(join(dataDir, 'redis.pid'), 'utf8');
  } catch {
    return undefined;
  }
  const [first, ...rest] = text.split('\n');
  const pid = Number(first);
  const owner = Number(rest.find((l) => l.startsWith('owner='))?.slice('owner='.length));
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  if (ownerPid !== undefined && owner !== ownerPid) return undefined;
  return pid;
}

function killEmbeddedRedis(dataDir: string, ownerPid: number, sync = false): number | undefined {
  const pid = embeddedRedisPid(dataDir, ownerPid);
  if (pid === undefined || !isProcessAlive(pid)) return undefined;
  safeKill(pid, sync ? 'SIGKILL' : 'SIGTERM');
  return pid;
}

function childEnv(opts: SpawnOptions, port: number, dataDir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const k of PASSED_THROUGH) if (process.env[k] !== undefined) env[k] = process.env[k];
  Object.assign(env, { PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: opts.logLevel ?? 'info' });
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/** Spawns `node dist/src/main.js <command>`; does not wait for anything. */
export async function spawnOrchestrator(command: string, opts: SpawnOptions = {}): Promise<OrchestratorProcess> {
  installExitHook();
  const ownDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'orch-proc-'));
  const port = opts.port ?? (await findFreePort());
  const env = childEnv(opts, port, dataDir);
  const started = Date.now();
  // process.execPath: the child's PATH only affects what the orchestrator itself looks up.
  const argv = [MAIN_JS, command, ...(opts.args ?? [])];
  const spawnOpts = {
    env,
    cwd: tmpdir(), // DATA_DIR may not exist yet (or ever, on a configuration error)
    stdio: ['ignore', 'pipe', 'pipe'] as ('ignore' | 'pipe')[],
  };
  // `; exit $?` keeps the shell from exec'ing node: it stays node's parent, as npm does.
  const child: ChildProcess = opts.inGroup
    ? spawn('/bin/sh', ['-c', '"$@"; exit $?', 'sh', process.execPath, ...argv], { ...spawnOpts, detached: true })
    : spawn(process.execPath, argv, spawnOpts);
  await new Promise<void>((res, rej) => {
    child.once('spawn', res);
    child.once('error', rej);
  });
  const pid = opts.inGroup ? await childOf(child.pid!, 10_000) : child.pid!;
  const reaper = spawnReaper({ pid, signal: 'TERM' });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const both: Buffer[] = [];
  child.stdout!.on('data', (b: Buffer) => (out.push(b), both.push(b)));
  child.stderr!.on('data', (b: Buffer) => (err.push(b), both.push(b)));

  let exitInfo: { code: number | null; signal: NodeJS.Signals | null; at: number } | undefined;
  let stopSentAt: number | undefined;
  let killed = false;
  const exited = new Promise<Exit>((res) => {
    // 'close': the exit AND the end of both pipes, so the captured output is complete.
    child.once('close', (code, signal) => {
      exitInfo = { code, signal, at: Date.now() };
      live.delete(proc);
      reaper.disarm();
      res({ code, signal, killed, ms: exitInfo.at - (stopSentAt ?? started), leftBehind: [] });
    });
  });

  const log = (lines = 60) => tailLines(Buffer.concat(both).toString('utf8'), lines);
  const describe = () => `orchestrator ${command} (pid ${pid}, port ${port}, DATA_DIR ${dataDir})`;

  // A killed orchestrator (or one that died of a signal) cannot stop its own, detached, redis-server.
  const reapLeftovers = async (): Promise<number[]> => {
    const redisPid = embeddedRedisPid(dataDir, pid);
    if (redisPid === undefined || (await waitForPidExit(redisPid, 2_000))) return [];
    killEmbeddedRedis(dataDir, pid);
    if (!(await waitForPidExit(redisPid, 5_000))) safeKill(redisPid, 'SIGKILL');
    return [redisPid];
  };

  let stopping: Promise<Exit> | undefined;
  const proc: OrchestratorProcess = {
    pid,
    port,
    url: `http://127.0.0.1:${port}`,
    dataDir,
    exited,
    stdout: () => Buffer.concat(out).toString('utf8'),
    stderr: () => Buffer.concat(err).toString('utf8'),
    log,
    hasExited: () => exitInfo !== undefined,
    killGroup() {
      if (exitInfo) return;
      stopSentAt = Date.now();
      safeKill(opts.inGroup ? -child.pid! : pid, 'SIGKILL');
    },
    async waitReady(timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      let last = 'no answer yet';
      for (;;) {
        if (exitInfo) {
          throw new Error(`${describe()} exited (code ${exitInfo.code}, signal ${exitInfo.signal}) before it was ready; its log:\n${log()}`);
        }
        try {
          const r = await fetch(`${proc.url}/readyz`, { signal: AbortSignal.timeout(2_000) });
          if (r.status === 200) return;
          last = `HTTP ${r.status}: ${(await r.text()).slice(0, 300)}`;
        } catch (e) {
          last = (e as Error).message;
        }
        if (Date.now() >= deadline) {
          await proc.stop('SIGKILL');
          throw new Error(`${describe()} not ready within ${timeoutMs} ms (last: ${last}); its log:\n${log()}`);
        }
        await sleep(100);
      }
    },
    stop(signal = 'SIGTERM', timeoutMs = 20_000) {
      if (stopping) return stopping;
      stopping = (async () => {
        if (exitInfo) return { ...(await exited), leftBehind: await reapLeftovers() };
        stopSentAt = Date.now();
        safeKill(pid, signal);
        let timer: NodeJS.Timeout | undefined;
        const done = await Promise.race([
          exited.then(() => true),
          new Promise<boolean>((res) => (timer = setTimeout(() => res(false), timeoutMs))),
        ]);
        clearTimeout(timer);
        if (!done) {
          killed = true;
          safeKill(pid, 'SIGKILL');
        }
        const result = await exited;
        return { ...result, leftBehind: await reapLeftovers() };
      })();
      return stopping;
    },
    cleanup() {
      if (ownDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
  live.add(proc);
  return proc;
}

/** The pid of the child of `parent` (the orchestrator under its shell), once it has one. */
async function childOf(parent: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const e of readdirSync('/proc')) {
      if (!/^\d+$/.test(e)) continue;
      try {
        if (new RegExp(`^PPid:\\s+${parent}$`, 'm').test(readFileSync(`/proc/${e}/status`, 'utf8'))) return Number(e);
      } catch {
        // exited meanwhile
      }
    }
    if (Date.now() >= deadline) throw new Error(`the shell (pid ${parent}) started no orchestrator within ${timeoutMs} ms`);
    await sleep(10);
  }
}

/** Spawns and waits until /readyz answers 200. */
export async function startOrchestrator(command: string, opts: SpawnOptions = {}, readyTimeoutMs = 60_000): Promise<OrchestratorProcess> {
  const p = await spawnOrchestrator(command, opts);
  await p.waitReady(readyTimeoutMs);
  return p;
}

/**
 * Runs a command that is expected to end by itself (a configuration error, a submit); SIGKILLs it
 * after `timeoutMs` (then `killed` is true).
 */
export async function runOrchestrator(
  command: string,
  opts: SpawnOptions = {},
  timeoutMs = 30_000,
): Promise<Exit & { stdout: string; stderr: string; proc: OrchestratorProcess }> {
  const started = Date.now();
  const p = await spawnOrchestrator(command, opts);
  let timer: NodeJS.Timeout | undefined;
  const inTime = await Promise.race([
    p.exited.then(() => true),
    new Promise<boolean>((res) => (timer = setTimeout(() => res(false), timeoutMs))),
  ]);
  clearTimeout(timer);
  const exit = await p.stop('SIGKILL', 0); // returns at once (and reaps leftovers) when it has exited
  return { ...exit, killed: !inTime, ms: Date.now() - started, stdout: p.stdout(), stderr: p.stderr(), proc: p };
}

/** Stops every process this helper started and is still running (for `after` hooks). */
export async function stopAllOrchestrators(): Promise<void> {
  await Promise.all([...live].map((p) => p.stop('SIGTERM', 10_000)));
}

/** Pids (other than ours) whose command line mentions `marker`, e.g. a DATA_DIR. */
export function processesMentioning(marker: string): { pid: number; cmdline: string }[] {
  const found: { pid: number; cmdline: string }[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return found;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${e}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
      if (cmdline.includes(marker) && isProcessAlive(Number(e))) found.push({ pid: Number(e), cmdline });
    } catch {
      // exited meanwhile
    }
  }
  return found;
}
