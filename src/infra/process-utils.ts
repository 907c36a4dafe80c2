/**
 * Small helpers for supervising processes we start ourselves (embedded Redis, test PostgreSQL).
 * Linux-first: where /proc is missing they fall back to what `kill(pid, 0)` can tell.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { spawn } from "node:child_process";
import { createServer, type Socket } from "node:net";

/** True when `pid` names a running process (a zombie counts as gone: it has exited, only its entry is left). */
export function isProcessAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
  const state = procStatusField(pid, "State");
  return state === undefined || !state.startsWith("Z");
}

/** The parent pid from /proc, or undefined when unknown. */
export function parentPid(pid: number): number | undefined {
  const ppid = procStatusField(pid, "PPid");
  return ppid === undefined ? undefined : Number(ppid);
}

/** The command line of `pid` as an argv array, or undefined when unknown. */
export function processArgv(pid: number): string[] | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    const argv = raw.split("\0");
    if (argv[argv.length - 1] === "") argv.pop(); // cmdline ends with a NUL
    return argv;
  } catch {
    return undefined; // the expected answer when the process is gone (or not visible): unknown
  }
}

function procStatusField(pid: number, field: string): string | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const line = status.split("\n").find((l) => l.startsWith(`${field}:`));
    return line?.slice(field.length + 1).trim();
  } catch {
    return undefined; // the expected answer when the process is gone
  }
}

/** PF_EXITING in the flags field of /proc/PID/stat: the process is being torn down (do_exit has begun). */
const PF_EXITING = 0x4;
/** SIGKILL's bit in the SigPnd/ShdPnd masks of /proc/PID/status. */
const SIGKILL_BIT = 1n << 8n;

/**
 * What became of a process, for a lock or pid file it left:
 * - `gone`: no such process, or the pid now names another process (its start time differs from `startTime`);
 * - `dead`: a zombie (state Z) or dead (X): it has exited, only its entry waits for its parent to reap it;
 * - `exiting`: being torn down (PF_EXITING), or a SIGKILL is pending for it: it will not run user code again,
 *   but its threads may still be finishing a system call (a write) until it is `dead`;
 * - `alive`: running.
 * Without /proc (not Linux) the answer is `alive` or `gone`, from kill(pid, 0).
 */
export type ProcessLife = 'gone' | 'dead' | 'exiting' | 'alive';

export function processLife(pid: number, startTime?: string): ProcessLife {
  if (!Number.isInteger(pid) || pid <= 0) return 'gone';
  const stat = procStat(pid);
  if (!stat) {
    try {
      process.kill(pid, 0);
      return existsSync('/proc/self/stat') ? 'gone' : 'alive'; // it vanished between the two reads, or no /proc
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'EPERM' ? 'alive' : 'gone';
    }
  }
  if (startTime !== undefined && stat.startTime !== startTime) return 'gone'; // the pid was reused
  if (stat.state === 'Z' || stat.state === 'X' || stat.state === 'x') {
    // A leader that exited before its other threads shows Z too: the process is dead once they are gone.
    return otherThreads(pid) ? 'exiting' : 'dead';
  }
  if (stat.flags & PF_EXITING) return 'exiting';
  const pending = [procStatusField(pid, 'SigPnd'), procStatusField(pid, 'ShdPnd')];
  if (pending.some((m) => m !== undefined && /^[0-9a-f]+$/i.test(m) && (BigInt(`0x${m}`) & SIGKILL_BIT) !== 0n)) return 'exiting';
  return 'alive';
}

/** Start time of a process (field 22 of /proc/PID/stat, clock ticks after boot): with the pid it names one process for good. */
export function processStartTime(pid: number | 'self'): string | undefined {
  return procStat(pid)?.startTime;
}

/** Waits while `pid` is `exiting`, up to `timeoutMs`; returns what it is then. */
export async function waitWhileExiting(pid: number, startTime: string | undefined, timeoutMs: number, pollMs = 20): Promise<ProcessLife> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const life = processLife(pid, startTime);
    if (life !== 'exiting' || Date.now() >= deadline) return life;
    await sleep(pollMs);
  }
}

function otherThreads(pid: number): boolean {
  try {
    return readdirSync(`/proc/${pid}/task`).some((t) => t !== String(pid));
  } catch {
    return false; // the expected answer when the process is gone: no threads
  }
}

function procStat(pid: number | 'self'): { state: string; flags: number; startTime: string } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined; // the expected answer when the process is gone
  }
  // comm (field 2) may hold spaces and parentheses: fields 3.. follow the last ')'.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const state = f[0];
  const flags = Number(f[9 - 3]);
  const startTime = f[22 - 3];
  if (!state || !Number.isFinite(flags) || !startTime || !/^\d+$/.test(startTime)) return undefined;
  return { state, flags, startTime };
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until `pid` has exited; resolves true if it did within `timeoutMs`. */
export async function waitForPidExit(pid: number, timeoutMs: number, pollMs = 25): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isProcessAlive(pid)) {
    if (Date.now() >= deadline) return false;
    await sleep(pollMs);
  }
  return true;
}

/**
 * Graceful, then forceful: SIGTERM, wait up to `graceMs`, then SIGKILL and wait up to `killWaitMs`.
 * Works for processes that are not our children (orphans from a previous run). Resolves true when
 * the process is gone.
 */
export async function terminatePid(pid: number, graceMs: number, killWaitMs = 5_000): Promise<boolean> {
  if (!isProcessAlive(pid)) return true;
  safeKill(pid, "SIGTERM");
  if (await waitForPidExit(pid, graceMs)) return true;
  safeKill(pid, "SIGKILL");
  return waitForPidExit(pid, killWaitMs);
}

export function safeKill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
  }
}

/**
 * A loopback TCP port that was free a moment ago (bind port 0, read it, close). Another process
 * can take it before the caller binds it; callers that start servers retry on "address in use".
 */
export function findFreePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen({ host, port: 0, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error("could not determine a free port"))));
    });
  });
}

/**
 * A reaper for a server that must not outlive this process (test databases, throwaway Redis).
 * Node cannot set PDEATHSIG, so a tiny `sh` blocks reading a pipe from us; when this process dies,
 * however it dies, the pipe reaches EOF and the reaper sends `signal` to `pid`, waits up to 10 s,
 * SIGKILLs it, and removes `removeDir` if given. Call `disarm()` once the server was stopped normally.
 */
export function spawnReaper(opts: { pid: number; signal: "TERM" | "QUIT" | "INT"; removeDir?: string }): { disarm(): void } {
  const script =
    'read _ ; kill -"$2" "$1" 2>/dev/null; i=0; ' +
    'while kill -0 "$1" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i+1)); done; ' +
    'kill -KILL "$1" 2>/dev/null; if [ -n "$3" ]; then rm -rf -- "$3"; fi';
  const reaper = spawn("/bin/sh", ["-c", script, "reaper", String(opts.pid), opts.signal, opts.removeDir ?? ""], {
    detached: true, // a Ctrl-C to our process group must not reach it
    stdio: ["pipe", "ignore", "ignore"],
  });
  // The only error is a failed spawn (no /bin/sh): then only the safety net is lost, and the caller, which
  // stops the process itself, still works; there is no logger this low.
  reaper.on("error", () => undefined);
  reaper.unref();
  (reaper.stdin as unknown as Socket | null)?.unref?.();
  return {
    disarm() {
      if (reaper.pid !== undefined && reaper.exitCode === null) safeKill(reaper.pid, "SIGKILL");
      reaper.stdin?.destroy();
    },
  };
}

/** The last `maxLines` lines of `text`, for error messages quoting a server's log. */
export function tailLines(text: string, maxLines: number): string {
  const lines = text.split("\n");
  while (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  return lines.slice(-maxLines).join("\n");
}
