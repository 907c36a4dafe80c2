// Orphans of the embedded Redis: a redis-server left running after a SIGKILL of its owner. Found through
// the pid file and the socket, then replaced (see redis-server.ts for why not adopted); a Redis whose
// owner still lives is never touched.
import { existsSync, readFileSync, rmSync } from "node:fs";
import { isProcessAlive, parentPid, processArgv, processLife, terminatePid, waitWhileExiting } from "./process-utils";
import { redisCommand } from "./redis-protocol";

/** Removes what a previous run left: an orphaned redis-server, a stale pid file, a stale socket. */
export async function clearPreviousRun(p: {
  dataDir: string;
  socketPath: string;
  pidFile: string;
  logger: { warn(obj: object, msg: string): void };
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
      // expected: nobody answers on a stale socket file (a hung process is found below, by its pid)
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
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined; // the expected answer: no previous run
    throw new Error(`cannot read the embedded Redis pid file ${file}: ${(err as Error).message}`);
  }
  const [first, ...rest] = text.split("\n");
  const pid = Number(first?.trim());
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  const ownerLine = rest.find((l) => l.startsWith("owner="));
  const ownerPid = ownerLine ? Number(ownerLine.slice("owner=".length)) : undefined;
  return { pid, ownerPid: Number.isInteger(ownerPid) ? ownerPid : undefined };
}

