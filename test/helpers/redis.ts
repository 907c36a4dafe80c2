/**
 * A throwaway Redis for tests: `redis-server` on a free loopback TCP port, no persistence, files in
 * a temp dir; or the server named by TEST_REDIS_URL (then stop() does nothing: isolate tests with
 * unique key/queue prefixes). Turn `url` into ioredis options with `redisOptionsFromUrl` (or pass
 * it to ioredis directly: it is a plain redis:// URL).
 *
 * If the test process dies without calling stop(), a reaper process stops the server.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findFreePort, safeKill, sleep, spawnReaper, tailLines, waitForPidExit } from "../../src/infra/process-utils";
import { REDIS_NOT_FOUND_MESSAGE, redisCommand, redisOptionsFromUrl } from "../../src/infra/redis-server";

export interface TestRedis {
  url: string;
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 10_000;

export async function startTestRedis(): Promise<TestRedis> {
  const external = process.env.TEST_REDIS_URL;
  if (external) {
    redisOptionsFromUrl(external); // fail early, with a clear message, on a malformed URL
    return { url: external, stop: async () => {} };
  }
  for (let attempt = 1; ; attempt++) {
    try {
      return await launch(await findFreePort());
    } catch (err) {
      // The port can be taken between findFreePort and bind.
      if (!/Address already in use/i.test((err as Error).message) || attempt >= 3) throw err;
    }
  }
}

async function launch(port: number): Promise<TestRedis> {
  const dir = mkdtempSync(join(tmpdir(), "orch-redis-"));
  const logFile = join(dir, "redis.log");
  const logFd = openSync(logFile, "a", 0o600);
  let child: ChildProcess;
  try {
    child = spawn(
      "redis-server",
      [
        "--bind", "127.0.0.1",
        "--port", String(port),
        "--save", "",
        "--appendonly", "no",
        "--dir", dir,
        "--daemonize", "no",
        "--protected-mode", "yes",
        "--logfile", "",
      ],
      { detached: true, stdio: ["ignore", logFd, logFd] },
    );
    await new Promise<void>((res, rej) => {
      child.once("spawn", res);
      child.once("error", rej);
    });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new Error(REDIS_NOT_FOUND_MESSAGE.replace("REDIS_URL", "TEST_REDIS_URL"));
    throw err;
  } finally {
    closeSync(logFd);
  }
  child.unref();
  child.on("error", () => {}); // signalling a process that is already gone is not an error here
  const pid = child.pid!;
  const reaper = spawnReaper({ pid, signal: "TERM", removeDir: dir });
  let exited = false;
  const exitPromise = new Promise<void>((res) => child.once("exit", () => ((exited = true), res())));

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (!exited) safeKill(pid, "SIGTERM");
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      exitPromise.then(() => false),
      new Promise<boolean>((res) => (timer = setTimeout(() => res(true), 5_000))),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      safeKill(pid, "SIGKILL");
      await waitForPidExit(pid, 5_000);
    }
    reaper.disarm();
    rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last = "";
  for (;;) {
    if (exited || Date.now() > deadline) {
      const log = tailLines(readFileSync(logFile, "utf8"), 20);
      await stop();
      throw new Error(
        `test redis-server on port ${port} ${exited ? "exited during start-up" : `not ready within ${READY_TIMEOUT_MS} ms (${last})`}:\n${log}`,
      );
    }
    try {
      if ((await redisCommand({ host: "127.0.0.1", port }, ["PING"], 1_000)) === "PONG") break;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(20);
  }
  return { url: `redis://127.0.0.1:${port}`, stop };
}
