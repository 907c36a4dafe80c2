/**
 * The embedded Redis: when the user sets no REDIS_URL, the program runs its own `redis-server`
 * (Debian package "redis-server") with its data in DATA_DIR.
 *
 * - Listens only on a unix socket (`--port 0`, socket mode 700): nothing on the network.
 * - Append-only file on (`appendfsync everysec`), no RDB snapshots: at most ~1 s of writes is lost
 *   on a crash of the machine; a graceful stop (SIGTERM) fsyncs everything.
 * - Spawned in its own process group, so a Ctrl-C in the terminal reaches only our process, which
 *   stops Redis last (after workers have handed their jobs back).
 * - Logs to DATA_DIR/redis.log (its stdout/stderr go to that file, so it never writes to a pipe of a
 *   process that may be gone).
 * - Writes DATA_DIR/redis.pid: line 1 the redis pid, then `owner=<our pid>` and `socket=<path>`.
 *
 * Orphans. Node cannot ask the kernel to kill a child when the parent dies (no PDEATHSIG), so after
 * a SIGKILL of our process its redis-server keeps running. On the next start we find it through
 * the pid file and the socket and REPLACE it rather than adopt it: we SIGTERM it (Redis then
 * fsyncs its AOF, so no acknowledged write is lost) and start a fresh child. Adopting would leave us
 * with a process that is not our child (no exit event when it crashes, stop() working differently)
 * and that may run an older binary or other options than this code asks for; replacing costs
 * about a tenth of a second. A Redis whose owner is still alive (another orchestrator process on
 * the same DATA_DIR) is never touched: that is an error.
 *
 * This file: the process (start, stop, pid file, log). Orphans: redis-orphans.ts; the RESP probe:
 * redis-protocol.ts; URLs: redis-url.ts.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { bestEffortSync } from "./best-effort";
import { safeKill, tailLines, waitForPidExit } from "./process-utils";
import { clearPreviousRun } from "./redis-orphans";
import { waitUntilReady } from "./redis-protocol";
import { unixSocketUrl } from "./redis-url";

// The parts, for their importers: the probe (redis-protocol.ts) and URL parsing (redis-url.ts).
export { redisCommand } from "./redis-protocol";
export { redact, redisOptionsFromUrl, unixSocketUrl } from "./redis-url";

export interface EmbeddedRedisLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface EmbeddedRedis {
  /** `unix:///…/redis.sock`; turn it into ioredis options with {@link redisOptionsFromUrl}. */
  url: string;
  socketPath: string;
  pid: number;
  /** Graceful (SIGTERM, up to 10 s for the AOF to be flushed), then SIGKILL. Idempotent. */
  stop(): Promise<void>;
}

export interface StartEmbeddedRedisOptions {
  /** Created (mode 700) if missing. Holds the AOF, redis.log, redis.pid and, if the path is short enough, redis.sock. */
  dataDir: string;
  logger: EmbeddedRedisLogger;
  /** The redis-server executable. Default "redis-server", looked up on PATH. */
  binary?: string;
  /** How long to wait for the first PONG. Default 10 s: loading a large AOF can take a while. */
  readyTimeoutMs?: number;
  /** How long stop() waits after SIGTERM before SIGKILL. Default 10 s. */
  stopTimeoutMs?: number;
}

const SOCKET_NAME = "redis.sock";
const PID_FILE = "redis.pid";
const LOG_FILE = "redis.log";
/** Rotate redis.log at start once it is this big (Redis itself never rotates). */
const LOG_ROTATE_BYTES = 16 * 1024 * 1024;
/** sun_path is 108 bytes on Linux including the NUL; keep a margin. */
const MAX_SOCKET_PATH_BYTES = 100;

export const REDIS_NOT_FOUND_MESSAGE =
  'redis-server not found: install the Debian/Ubuntu package "redis-server" (apt-get install redis-server) or set REDIS_URL';

/**
 * Where the socket goes: DATA_DIR/redis.sock, or — when that path is too long for a unix socket —
 * a short name under the system temp dir derived from a hash of DATA_DIR. The name is stable, so a
 * later start finds an orphan there too.
 */
export function embeddedRedisSocketPath(dataDir: string): string {
  const preferred = join(resolve(dataDir), SOCKET_NAME);
  if (Buffer.byteLength(preferred) <= MAX_SOCKET_PATH_BYTES) return preferred;
  const hash = createHash("sha256").update(resolve(dataDir)).digest("hex").slice(0, 16);
  const fallback = join(tmpdir(), `orchestrator-redis-${hash}.sock`);
  if (Buffer.byteLength(fallback) > MAX_SOCKET_PATH_BYTES) {
    throw new Error(
      `cannot place the Redis unix socket: ${preferred} and ${fallback} are both longer than ` +
        `${MAX_SOCKET_PATH_BYTES} bytes (the limit for unix socket paths); use a shorter DATA_DIR or TMPDIR`,
    );
  }
  return fallback;
}

export async function startEmbeddedRedis(opts: StartEmbeddedRedisOptions): Promise<EmbeddedRedis> {
  const { logger } = opts;
  const binary = opts.binary ?? "redis-server";
  const readyTimeoutMs = opts.readyTimeoutMs ?? 10_000;
  const stopTimeoutMs = opts.stopTimeoutMs ?? 10_000;
  const dataDir = resolve(opts.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const socketPath = embeddedRedisSocketPath(dataDir);
  const pidFile = join(dataDir, PID_FILE);
  const logFile = join(dataDir, LOG_FILE);
  if (!socketPath.startsWith(dataDir)) {
    logger.info({ socketPath, dataDir }, "DATA_DIR path too long for a unix socket; Redis socket placed in the temp dir");
  }

  await clearPreviousRun({ dataDir, socketPath, pidFile, logger, stopTimeoutMs });
  rotateLog(logFile, logger);

  const logStart = existsSync(logFile) ? statSync(logFile).size : 0;
  const logFd = openSync(logFile, "a", 0o600);
  const args = [
    "--port", "0",
    "--unixsocket", socketPath,
    "--unixsocketperm", "700",
    "--dir", dataDir,
    "--appendonly", "yes",
    "--appendfsync", "everysec",
    "--save", "",
    "--daemonize", "no",
    "--protected-mode", "yes",
    // BullMQ needs keys never to be evicted (this is Redis's default; stated so nobody changes it by accident).
    "--maxmemory-policy", "noeviction",
    "--logfile", "",
  ];
  let child: ChildProcess;
  try {
    child = spawn(binary, args, { detached: true, stdio: ["ignore", logFd, logFd] });
    await new Promise<void>((res, rej) => {
      child.once("spawn", res);
      child.once("error", rej);
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new Error(`${REDIS_NOT_FOUND_MESSAGE} (tried "${binary}")`);
    if (code === "EACCES") throw new Error(`redis-server "${binary}" is not executable (EACCES); ${REDIS_NOT_FOUND_MESSAGE}`);
    throw err;
  } finally {
    closeSync(logFd);
  }
  child.unref(); // lifetime is managed by stop() and the exit hook, not by Node's event loop
  const pid = child.pid!;
  child.on("error", (err) => logger.error({ pid, err }, "embedded redis-server: signalling failed"));
  writeFileSync(pidFile, `${pid}\nowner=${process.pid}\nsocket=${socketPath}\n`, { mode: 0o600 });

  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  let stopping = false;
  const exitPromise = new Promise<void>((res) => {
    child.once("exit", (code, signal) => {
      exited = { code, signal };
      if (!stopping) logger.error({ pid, code, signal, logFile }, "embedded redis-server exited unexpectedly");
      res();
    });
  });
  // A normal exit or an uncaught exception of our process must not leave Redis behind. (Only a
  // SIGKILL can; the next start replaces that orphan.)
  const onProcessExit = (): void => {
    if (!exited) safeKill(pid, "SIGTERM");
  };
  process.on("exit", onProcessExit);

  const stop = async (): Promise<void> => {
    if (stopping) return exitPromise;
    stopping = true;
    process.off("exit", onProcessExit);
    if (!exited) {
      safeKill(pid, "SIGTERM");
      let timer: NodeJS.Timeout | undefined;
      // The timer also keeps Node's event loop alive while we wait for the (unref'd) child.
      const timedOut = await Promise.race([
        exitPromise.then(() => false),
        new Promise<boolean>((res) => (timer = setTimeout(() => res(true), stopTimeoutMs))),
      ]);
      clearTimeout(timer);
      if (timedOut) {
        logger.warn({ pid, stopTimeoutMs }, "redis-server did not stop after SIGTERM; sending SIGKILL");
        safeKill(pid, "SIGKILL");
        await waitForPidExit(pid, 5_000);
      }
    }
    rmSync(pidFile, { force: true });
    rmSync(socketPath, { force: true }); // Redis removes it on a clean exit; not after SIGKILL
  };

  const started = Date.now();
  try {
    await waitUntilReady(socketPath, readyTimeoutMs, () => exited);
  } catch (err) {
    await stop();
    const log = readLogSince(logFile, logStart, logger);
    throw new Error(
      `embedded redis-server (pid ${pid}) did not become ready: ${(err as Error).message}\n` +
        `last lines of ${logFile}:\n${tailLines(log, 20) || "(empty)"}`,
    );
  }
  logger.info({ pid, socketPath, dataDir, startMs: Date.now() - started }, "embedded redis-server ready");
  return { url: unixSocketUrl(socketPath), socketPath, pid, stop };
}

function rotateLog(logFile: string, logger: EmbeddedRedisLogger): void {
  let size: number;
  try {
    size = statSync(logFile).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return; // the expected answer: no log yet
    throw err;
  }
  if (size > LOG_ROTATE_BYTES) bestEffortSync(logger, `rotating ${logFile}`, () => renameSync(logFile, `${logFile}.1`));
}

function readLogSince(logFile: string, offset: number, logger: EmbeddedRedisLogger): string {
  return bestEffortSync(logger, `reading ${logFile} for the start-up error`, () => readFileSync(logFile).subarray(offset).toString("utf8"), "") ?? "";
}

