/**
 * A real PostgreSQL server for tests (Debian's postgresql-15 binaries), or the server named by
 * TEST_DATABASE_URL. Each test file calls `createDatabase()` for a fresh, isolated database.
 *
 * - Not installed → an Error naming the Debian package "postgresql": tests fail, they do not skip.
 * - initdb refuses root: as root, initdb and the server run as "nobody" (no user is created;
 *   Node's spawn uid/gid switch, which also drops supplementary groups).
 * - Fast: initdb (~1 s) runs once per machine; later starts copy that cluster from a template in
 *   the temp dir (~0.1 s). Durability is off (fsync, synchronous_commit, full_page_writes).
 * - Listens on 127.0.0.1 on a free port and on a unix socket in its temp dir.
 * - stop() is an immediate shutdown (SIGQUIT) and removes the temp dir. If the test process dies
 *   without calling it, a reaper process stops the server and removes the dir.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "pg";
import { findFreePort, isProcessAlive, parentPid, safeKill, sleep, spawnReaper, tailLines, waitForPidExit } from "../../src/infra/process-utils";

export interface TestPostgres {
  /** Superuser URL of the server's `postgres` database (or TEST_DATABASE_URL). */
  url: string;
  /** Stops the server and removes its files; with TEST_DATABASE_URL, drops the databases it created. */
  stop(): Promise<void>;
  /** Creates an empty database (default name `test_<random>`) and returns its URL. */
  createDatabase(name?: string): Promise<string>;
}

const PG_ROOT = "/usr/lib/postgresql";
const NOT_INSTALLED =
  'PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: install the Debian package "postgresql" ' +
  "(apt-get install postgresql), or set TEST_DATABASE_URL to a server the tests may create databases on";
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

export async function startTestPostgres(): Promise<TestPostgres> {
  const external = process.env.TEST_DATABASE_URL;
  if (external) return useExternalServer(external);
  return startLocalServer();
}

// ---------------------------------------------------------------------------------------------
// An existing server (TEST_DATABASE_URL)

async function useExternalServer(url: string): Promise<TestPostgres> {
  try {
    new URL(url);
  } catch {
    throw new Error(`TEST_DATABASE_URL is not a URL: ${url.replace(/:[^:@/]*@/, ":***@")}`);
  }
  await query(url, "select 1");
  const created: string[] = [];
  return {
    url,
    async createDatabase(name) {
      const db = await createDb(url, name);
      created.push(db);
      return withDatabase(url, db);
    },
    async stop() {
      for (const db of created.splice(0)) {
        await query(url, `drop database if exists ${quoteIdent(db)} with (force)`).catch(() => {});
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// A server of our own

async function startLocalServer(): Promise<TestPostgres> {
  const bin = findPgBinDir();
  const runAs = process.getuid?.() === 0 ? unprivilegedUser() : undefined;
  const root = mkdtempSync(join(tmpdir(), "orch-pg-"));
  const dataDir = join(root, "data");
  const sockDir = join(root, "sock");
  const logFile = join(root, "postgres.log");
  try {
    await prepareDataDir(bin, dataDir, runAs);
    mkdirSync(sockDir, { mode: 0o700 });
    if (runAs) chownRecursive(root, runAs);
  } catch (err) {
    rmSync(root, { recursive: true, force: true });
    throw err;
  }

  // The port can be taken between findFreePort and bind: retry a few times on that.
  for (let attempt = 1; ; attempt++) {
    const port = await findFreePort();
    try {
      return await launch({ bin, root, dataDir, sockDir, logFile, port, runAs });
    } catch (err) {
      const inUse = /could not bind|Address already in use/i.test((err as Error).message);
      if (!inUse || attempt >= 3) {
        rmSync(root, { recursive: true, force: true });
        throw err;
      }
    }
  }
}

interface RunAs {
  uid: number;
  gid: number;
  name: string;
}

async function launch(p: {
  bin: string;
  root: string;
  dataDir: string;
  sockDir: string;
  logFile: string;
  port: number;
  runAs: RunAs | undefined;
}): Promise<TestPostgres> {
  const logStart = existsSync(p.logFile) ? readFileSync(p.logFile).length : 0;
  const logFd = openSync(p.logFile, "a", 0o644);
  let child: ChildProcess;
  try {
    child = spawn(
      join(p.bin, "postgres"),
      [
        "-D", p.dataDir,
        "-p", String(p.port),
        "-k", p.sockDir,
        "-c", "listen_addresses=127.0.0.1",
        "-c", "fsync=off",
        "-c", "synchronous_commit=off",
        "-c", "full_page_writes=off",
        "-c", "max_connections=200",
      ],
      {
        detached: true, // a Ctrl-C to the test runner must not reach it before we stop it
        stdio: ["ignore", logFd, logFd],
        env: { ...process.env, LC_ALL: "C", HOME: p.root },
        ...(p.runAs ? { uid: p.runAs.uid, gid: p.runAs.gid } : {}),
      },
    );
    await new Promise<void>((res, rej) => {
      child.once("spawn", res);
      child.once("error", rej);
    });
  } finally {
    closeSync(logFd);
  }
  child.unref();
  child.on("error", () => {}); // signalling a process that is already gone is not an error here
  const pid = child.pid!;
  const reaper = spawnReaper({ pid, signal: "QUIT", removeDir: p.root });
  let exited = false;
  const exitPromise = new Promise<void>((res) => child.once("exit", () => ((exited = true), res())));

  const url = `postgresql://postgres@127.0.0.1:${p.port}/postgres`;
  let stopped = false;
  // keepFiles: a failed start leaves the cluster for the caller to retry on another port.
  const stop = async (keepFiles = false): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // Immediate shutdown: the postmaster SIGQUITs its backends and exits; nothing to keep.
    if (!exited) safeKill(pid, "SIGQUIT");
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      exitPromise.then(() => false),
      new Promise<boolean>((res) => (timer = setTimeout(() => res(true), STOP_TIMEOUT_MS))),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      safeKill(pid, "SIGKILL");
      await waitForPidExit(pid, 5_000);
    }
    // Backends notice the postmaster's death by themselves; wait for any still around.
    for (const backend of childPids(pid)) await waitForPidExit(backend, 5_000);
    reaper.disarm();
    if (!keepFiles) rmSync(p.root, { recursive: true, force: true });
  };

  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last = "";
  for (;;) {
    if (exited) {
      await stop(true);
      throw new Error(`postgres exited during start-up; last lines of its log:\n${logTail(p.logFile, logStart)}`);
    }
    try {
      await query(url, "select 1");
      break;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) {
      await stop(true);
      throw new Error(
        `postgres not ready within ${READY_TIMEOUT_MS} ms (last error: ${last}); last lines of its log:\n${logTail(p.logFile, logStart)}`,
      );
    }
    await sleep(25);
  }

  return {
    url,
    stop: () => stop(),
    async createDatabase(name) {
      return withDatabase(url, await createDb(url, name));
    },
  };
}

/** The newest /usr/lib/postgresql/<major>/bin holding initdb and postgres. */
export function findPgBinDir(): string {
  let versions: string[];
  try {
    versions = readdirSync(PG_ROOT);
  } catch {
    throw new Error(NOT_INSTALLED);
  }
  const candidates = versions
    .filter((v) => /^\d+(\.\d+)?$/.test(v))
    .sort((a, b) => Number(b) - Number(a))
    .map((v) => join(PG_ROOT, v, "bin"))
    .filter((dir) => existsSync(join(dir, "initdb")) && existsSync(join(dir, "postgres")));
  if (candidates.length === 0) throw new Error(NOT_INSTALLED);
  return candidates[0]!;
}

/**
 * Puts a freshly initialised cluster at `dataDir`: a copy of the per-machine template when there is
 * one, else initdb (and the result becomes the template for the next test process).
 */
async function prepareDataDir(bin: string, dataDir: string, runAs: RunAs | undefined): Promise<void> {
  const major = bin.split("/").at(-2);
  const template = join(tmpdir(), `orch-pg-template-${major}-${runAs?.uid ?? process.getuid?.() ?? "u"}`);
  const marker = join(template, ".complete");
  if (existsSync(marker)) {
    const cp = spawnSync("cp", ["-a", template, dataDir], { encoding: "utf8" });
    if (cp.status === 0) {
      rmSync(join(dataDir, ".complete"), { force: true });
      return;
    }
    rmSync(dataDir, { recursive: true, force: true }); // fall back to initdb
  }

  const parent = join(dataDir, "..");
  if (runAs) chownRecursive(parent, runAs);
  const init = spawnSync(
    join(bin, "initdb"),
    ["-D", dataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
    {
      encoding: "utf8",
      env: { ...process.env, LC_ALL: "C", HOME: parent },
      ...(runAs ? { uid: runAs.uid, gid: runAs.gid } : {}),
    },
  );
  if (init.error) throw new Error(`could not run initdb: ${init.error.message}`);
  if (init.status !== 0) {
    throw new Error(`initdb failed (exit ${init.status}):\n${tailLines(`${init.stdout}\n${init.stderr}`, 20)}`);
  }

  // Publish the template atomically (copy aside, then rename); a concurrent test process that won
  // the race already published one, which is as good.
  const staging = `${template}.tmp-${process.pid}-${randomBytes(3).toString("hex")}`;
  if (spawnSync("cp", ["-a", dataDir, staging]).status === 0) {
    writeFileSync(join(staging, ".complete"), "");
    try {
      renameSync(staging, template);
    } catch {
      rmSync(staging, { recursive: true, force: true });
    }
  }
}

function unprivilegedUser(): RunAs {
  const passwd = readFileSync("/etc/passwd", "utf8");
  const line = passwd.split("\n").find((l) => l.startsWith("nobody:"));
  const [, , uid, gid] = line?.split(":") ?? [];
  if (uid === undefined || gid === undefined) {
    throw new Error('running as root, but there is no "nobody" user to run PostgreSQL as (initdb refuses root)');
  }
  return { name: "nobody", uid: Number(uid), gid: Number(gid) };
}

function chownRecursive(dir: string, runAs: RunAs): void {
  const r = spawnSync("chown", ["-R", `${runAs.uid}:${runAs.gid}`, dir], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`chown -R ${runAs.name} ${dir} failed: ${r.stderr}`);
}

/** Pids whose parent is `pid` (the postmaster's backends), from /proc. */
function childPids(pid: number): number[] {
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return [];
  }
  return entries
    .filter((e) => /^\d+$/.test(e))
    .map(Number)
    .filter((p) => parentPid(p) === pid && isProcessAlive(p));
}

function logTail(logFile: string, from: number): string {
  try {
    return tailLines(readFileSync(logFile).subarray(from).toString("utf8"), 20) || "(empty)";
  } catch {
    return "(no log)";
  }
}

// ---------------------------------------------------------------------------------------------
// SQL helpers

async function query(url: string, sql: string): Promise<void> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  client.on("error", () => {}); // a server going away while idle must not crash the test process
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end().catch(() => {});
  }
}

async function createDb(serverUrl: string, name?: string): Promise<string> {
  const db = name ?? `test_${randomBytes(6).toString("hex")}`;
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(db)) {
    throw new Error(`invalid database name "${db}": use lower-case letters, digits and _ (at most 63)`);
  }
  await query(serverUrl, `create database ${quoteIdent(db)}`);
  return db;
}

function withDatabase(serverUrl: string, db: string): string {
  const u = new URL(serverUrl);
  u.pathname = `/${db}`;
  return u.toString();
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
