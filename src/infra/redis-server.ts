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
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { RedisOptions } from "ioredis";
import { isProcessAlive, parentPid, processArgv, processLife, safeKill, sleep, tailLines, terminatePid, waitForPidExit, waitWhileExiting } from "./process-utils";

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
  rotateLog(logFile);

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
    const log = readLogSince(logFile, logStart);
    throw new Error(
      `embedded redis-server (pid ${pid}) did not become ready: ${(err as Error).message}\n` +
        `last lines of ${logFile}:\n${tailLines(log, 20) || "(empty)"}`,
    );
  }
  logger.info({ pid, socketPath, dataDir, startMs: Date.now() - started }, "embedded redis-server ready");
  return { url: unixSocketUrl(socketPath), socketPath, pid, stop };
}

/** Removes what a previous run left: an orphaned redis-server, a stale pid file, a stale socket. */
async function clearPreviousRun(p: {
  dataDir: string;
  socketPath: string;
  pidFile: string;
  logger: EmbeddedRedisLogger;
  stopTimeoutMs: number;
}): Promise<void> {
  const record = readPidFile(p.pidFile);
  // The socket is the ground truth: whoever answers on it is the Redis of this DATA_DIR.
  let livePid: number | undefined;
  if (existsSync(p.socketPath)) {
    try {
      const info = await redisCommand({ path: p.socketPath }, ["INFO", "server"], 1_000);
      const m = /process_id:(\d+)/.exec(info);
      if (m) livePid = Number(m[1]);
    } catch {
      // nobody answers: a stale socket file (or a hung process, handled below)
    }
  }
  // A process from the pid file that no longer answers but is still a redis-server on our socket
  // (hung, or still loading): also ours to stop. A pid reused by some unrelated program is left alone.
  if (livePid === undefined && record && isProcessAlive(record.pid)) {
    const argv = processArgv(record.pid) ?? [];
    if (argv.some((a) => a.includes("redis-server")) && argv.includes(p.socketPath)) livePid = record.pid;
  }

  if (livePid !== undefined && isProcessAlive(livePid)) {
    const owner = record?.ownerPid;
    // An owner SIGKILLed a moment ago (a supervisor restarting at once) may still be exiting, its children
    // not yet handed to init: wait for it to be gone (a few ms to a few s) rather than call it alive.
    if (owner !== undefined && owner !== process.pid && (await waitWhileExiting(owner, undefined, 5_000)) === "exiting") {
      p.logger.warn({ ownerPid: owner }, "the previous owner of the embedded Redis is still exiting after 5 s; replacing its redis-server anyway");
    }
    const ppid = parentPid(livePid);
    // Our children stay our children while we live: a Redis whose parent is its recorded, running owner has a live owner.
    if (owner !== undefined && ppid === owner && (owner === process.pid || processLife(owner) === "alive")) {
      const who = owner === process.pid ? "this process" : `another process (pid ${owner})`;
      throw new Error(
        `the embedded Redis of DATA_DIR ${p.dataDir} is already running (redis-server pid ${livePid}, started by ${who}); ` +
          `stop that first or use another DATA_DIR`,
      );
    }
    p.logger.warn(
      { pid: livePid, previousOwnerPid: owner, socketPath: p.socketPath },
      "found a redis-server left running by a previous run; stopping it (SIGTERM flushes its AOF) to start one we own",
    );
    if (!(await terminatePid(livePid, p.stopTimeoutMs))) {
      throw new Error(`could not stop the orphaned redis-server (pid ${livePid}) of DATA_DIR ${p.dataDir}`);
    }
  }
  rmSync(p.pidFile, { force: true });
  rmSync(p.socketPath, { force: true });
}

function readPidFile(file: string): { pid: number; ownerPid?: number } | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
  const [first, ...rest] = text.split("\n");
  const pid = Number(first?.trim());
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  const ownerLine = rest.find((l) => l.startsWith("owner="));
  const ownerPid = ownerLine ? Number(ownerLine.slice("owner=".length)) : undefined;
  return { pid, ownerPid: Number.isInteger(ownerPid) ? ownerPid : undefined };
}

function rotateLog(logFile: string): void {
  try {
    if (statSync(logFile).size > LOG_ROTATE_BYTES) renameSync(logFile, `${logFile}.1`);
  } catch {
    // no log yet
  }
}

function readLogSince(logFile: string, offset: number): string {
  try {
    return readFileSync(logFile).subarray(offset).toString("utf8");
  } catch {
    return "";
  }
}

async function waitUntilReady(
  socketPath: string,
  timeoutMs: number,
  exitedInfo: () => { code: number | null; signal: NodeJS.Signals | null } | undefined,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer yet";
  for (;;) {
    const exited = exitedInfo();
    if (exited) throw new Error(`it exited during start-up (code ${exited.code}, signal ${exited.signal})`);
    try {
      const reply = await redisCommand({ path: socketPath }, ["PING"], 1_000);
      if (reply === "PONG") return;
      last = reply; // e.g. LOADING while the AOF is read
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() >= deadline) throw new Error(`no PONG within ${timeoutMs} ms (last: ${last})`);
    await sleep(20);
  }
}

/**
 * Sends one command over RESP and returns a simple-string or bulk reply; an error reply rejects.
 * Deliberately tiny (no ioredis) so probing a possibly dead socket has no reconnect behaviour.
 */
export function redisCommand(
  target: { path: string } | { host: string; port: number },
  args: string[],
  timeoutMs: number,
): Promise<string> {
  return new Promise((res, rej) => {
    const socket = createConnection(target);
    let buf = Buffer.alloc(0);
    const done = (err: Error | null, value?: string): void => {
      socket.destroy();
      clearTimeout(timer);
      if (err) rej(err);
      else res(value!);
    };
    const timer = setTimeout(() => done(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
    socket.once("error", (err) => done(err));
    socket.once("close", () => done(new Error("connection closed before a reply")));
    socket.on("data", (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      const eol = buf.indexOf("\r\n");
      if (eol < 0) return;
      const head = buf.subarray(1, eol).toString("utf8");
      switch (String.fromCharCode(buf[0]!)) {
        case "+":
        case ":":
          return done(null, head);
        case "-":
          return done(new Error(`redis error: ${head}`));
        case "$": {
          const len = Number(head);
          if (len < 0) return done(null, "");
          if (buf.length < eol + 2 + len + 2) return; // wait for the rest
          return done(null, buf.subarray(eol + 2, eol + 2 + len).toString("utf8"));
        }
        default:
          return done(new Error(`unexpected reply: ${JSON.stringify(buf.toString("utf8").slice(0, 80))}`));
      }
    });
    socket.write(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join(""));
  });
}

/** `unix:///abs/path/redis.sock`, each path segment percent-encoded. */
export function unixSocketUrl(socketPath: string): string {
  return `unix://${resolve(socketPath).split("/").map(encodeURIComponent).join("/")}`;
}

/**
 * ioredis options from a Redis URL:
 * - `redis://[[user]:password@]host[:port][/db]` (port default 6379, db default 0)
 * - `rediss://…` — the same over TLS
 * - `unix:///path/to/redis.sock[?db=N&password=…&username=…]` (the redis-py/redis-cli form)
 * Throws an Error naming the problem for anything else.
 */
export function redisOptionsFromUrl(url: string): RedisOptions {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`invalid Redis URL "${redact(url)}": expected redis://host:port/db, rediss://… or unix:///path/to/socket`);
  }
  const bad = (why: string): Error => new Error(`invalid Redis URL "${redact(url)}": ${why}`);
  const decode = (s: string): string => {
    try {
      return decodeURIComponent(s);
    } catch {
      throw bad("bad percent-encoding");
    }
  };
  const parseDb = (raw: string | null | undefined): number | undefined => {
    if (raw === null || raw === undefined || raw === "") return undefined;
    if (!/^\d+$/.test(raw)) throw bad(`database index "${raw}" is not a non-negative integer`);
    return Number(raw);
  };
  const options: RedisOptions = {};
  switch (u.protocol) {
    case "unix:": {
      if (u.host !== "") throw bad('a unix socket URL has no host: write unix:///absolute/path (three slashes)');
      const path = decode(u.pathname);
      if (path === "" || path === "/") throw bad("no socket path");
      options.path = path;
      const db = parseDb(u.searchParams.get("db"));
      if (db !== undefined) options.db = db;
      const password = u.searchParams.get("password");
      if (password) options.password = password;
      const username = u.searchParams.get("username");
      if (username) options.username = username;
      return options;
    }
    case "redis:":
    case "rediss:": {
      const host = u.hostname.replace(/^\[(.*)\]$/, "$1"); // IPv6 literals come bracketed
      if (host === "") throw bad("no host");
      options.host = host;
      options.port = u.port === "" ? 6379 : Number(u.port);
      if (u.username) options.username = decode(u.username);
      if (u.password) options.password = decode(u.password);
      const dbPath = u.pathname.replace(/^\//, "");
      if (dbPath.includes("/")) throw bad(`path "${u.pathname}" should be a database index like /0`);
      const db = parseDb(dbPath) ?? parseDb(u.searchParams.get("db"));
      if (db !== undefined) options.db = db;
      if (u.protocol === "rediss:") options.tls = { servername: host };
      return options;
    }
    default:
      throw bad(`unsupported scheme "${u.protocol}" (use redis://, rediss:// or unix://)`);
  }
}

/** The URL with any password replaced, for error messages and logs. */
export function redact(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, "//$1:***@").replace(/([?&]password=)[^&]*/, "$1***");
}
