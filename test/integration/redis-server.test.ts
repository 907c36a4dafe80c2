import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { Redis } from "ioredis";
import { isProcessAlive, waitForPidExit } from "../../src/infra/process-utils";
import { startTestRedis } from "../helpers/redis";
import { redisOptionsFromUrl, startEmbeddedRedis, type EmbeddedRedisLogger } from "../../src/infra/redis-server";

const roots: string[] = [];
function tempDir(prefix = "emb-redis-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  roots.push(dir);
  return dir;
}
after(() => {
  for (const dir of roots) rmSync(dir, { recursive: true, force: true });
});

function captureLogger(): EmbeddedRedisLogger & { lines: { level: string; obj: object; msg: string }[] } {
  const lines: { level: string; obj: object; msg: string }[] = [];
  return {
    lines,
    info: (obj, msg) => lines.push({ level: "info", obj, msg }),
    warn: (obj, msg) => lines.push({ level: "warn", obj, msg }),
    error: (obj, msg) => lines.push({ level: "error", obj, msg }),
  };
}

async function withClient<T>(url: string, fn: (r: Redis) => Promise<T>): Promise<T> {
  const client = new Redis({ ...redisOptionsFromUrl(url), lazyConnect: true, maxRetriesPerRequest: 1 });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    client.disconnect();
  }
}

describe("startEmbeddedRedis", () => {
  test("starts on a unix socket, answers PING, and stop() leaves nothing running", async () => {
    const dataDir = tempDir();
    const t0 = Date.now();
    const redis = await startEmbeddedRedis({ dataDir, logger: captureLogger() });
    const startMs = Date.now() - t0;
    try {
      assert.equal(redis.socketPath, join(dataDir, "redis.sock"));
      assert.match(redis.url, /^unix:\/\//);
      assert.ok(isProcessAlive(redis.pid));
      assert.equal(readFileSync(join(dataDir, "redis.pid"), "utf8").split("\n")[0], String(redis.pid));
      await withClient(redis.url, async (c) => {
        assert.equal(await c.ping(), "PONG");
        assert.deepEqual(await c.config("GET", "appendonly"), ["appendonly", "yes"]);
        assert.deepEqual(await c.config("GET", "port"), ["port", "0"]);
      });
    } finally {
      await redis.stop();
    }
    assert.equal(isProcessAlive(redis.pid), false, "redis-server still running after stop()");
    assert.equal(existsSync(redis.socketPath), false);
    assert.equal(existsSync(join(dataDir, "redis.pid")), false);
    await redis.stop(); // idempotent
    console.log(`embedded redis start: ${startMs} ms`);
  });

  test("data survives a restart (append-only file)", async () => {
    const dataDir = tempDir();
    const first = await startEmbeddedRedis({ dataDir, logger: captureLogger() });
    await withClient(first.url, (c) => c.set("k", "v1"));
    await first.stop();
    const second = await startEmbeddedRedis({ dataDir, logger: captureLogger() });
    try {
      assert.equal(await withClient(second.url, (c) => c.get("k")), "v1");
    } finally {
      await second.stop();
    }
  });

  test("replaces a redis-server orphaned by a SIGKILLed owner, keeping its data", async () => {
    const dataDir = tempDir();
    const moduleDir = join(__dirname, "../../src/infra");
    // The owner: a separate Node process that starts Redis, writes a key, reports, then idles.
    const script = `
      const { startEmbeddedRedis, redisOptionsFromUrl } = require(${JSON.stringify(join(moduleDir, "redis-server.js"))});
      const { Redis } = require("ioredis");
      const noop = () => {};
      (async () => {
        const r = await startEmbeddedRedis({ dataDir: ${JSON.stringify(dataDir)}, logger: { info: noop, warn: noop, error: noop } });
        const c = new Redis(redisOptionsFromUrl(r.url));
        await c.set("survivor", "yes");
        c.disconnect();
        process.stdout.write(JSON.stringify({ pid: r.pid }) + "\\n");
        setInterval(noop, 1000);
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const owner = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"], cwd: join(__dirname, "../..") });
    const orphanPid = await new Promise<number>((resolve, reject) => {
      let out = "";
      owner.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        if (out.includes("\n")) resolve((JSON.parse(out.split("\n")[0]!) as { pid: number }).pid);
      });
      owner.once("exit", (code) => reject(new Error(`owner exited early (${code})`)));
    });
    owner.kill("SIGKILL");
    await new Promise((r) => owner.once("exit", r));
    assert.ok(isProcessAlive(orphanPid), "the orphan should outlive its SIGKILLed owner");

    const logger = captureLogger();
    const redis = await startEmbeddedRedis({ dataDir, logger });
    try {
      assert.notEqual(redis.pid, orphanPid);
      assert.ok(await waitForPidExit(orphanPid, 1_000), "orphan still running");
      assert.ok(logger.lines.some((l) => l.level === "warn" && /previous run/.test(l.msg)));
      assert.equal(await withClient(redis.url, (c) => c.get("survivor")), "yes");
    } finally {
      await redis.stop();
    }
  });

  test("cleans a stale pid file and socket left by a dead process", async () => {
    const dataDir = tempDir();
    const dead = spawn("true");
    await new Promise((r) => dead.once("exit", r));
    writeFileSync(join(dataDir, "redis.pid"), `${dead.pid}\nowner=${dead.pid}\n`);
    writeFileSync(join(dataDir, "redis.sock"), "stale");
    const redis = await startEmbeddedRedis({ dataDir, logger: captureLogger() });
    try {
      assert.equal(await withClient(redis.url, (c) => c.ping()), "PONG");
    } finally {
      await redis.stop();
    }
  });

  test("refuses a DATA_DIR whose Redis is owned by a live process", async () => {
    const dataDir = tempDir();
    const redis = await startEmbeddedRedis({ dataDir, logger: captureLogger() });
    try {
      await assert.rejects(startEmbeddedRedis({ dataDir, logger: captureLogger() }), /already running .*this process/);
      assert.ok(isProcessAlive(redis.pid), "the running Redis must not be touched");
    } finally {
      await redis.stop();
    }
  });

  test("a DATA_DIR too long for a unix socket gets a short socket in the temp dir", async () => {
    const dataDir = join(tempDir(), "x".repeat(60), "y".repeat(60));
    const redis = await startEmbeddedRedis({ dataDir, logger: captureLogger() });
    try {
      assert.ok(redis.socketPath.startsWith(tmpdir()), redis.socketPath);
      assert.ok(Buffer.byteLength(redis.socketPath) <= 100);
      assert.equal(await withClient(redis.url, (c) => c.ping()), "PONG");
    } finally {
      await redis.stop();
    }
    assert.equal(existsSync(redis.socketPath), false);
  });

  test("a missing binary names the Debian package and REDIS_URL", async () => {
    await assert.rejects(
      startEmbeddedRedis({ dataDir: tempDir(), logger: captureLogger(), binary: "/nonexistent/redis-server" }),
      (err: Error) => {
        assert.match(err.message, /redis-server not found: install the Debian\/Ubuntu package "redis-server" \(apt-get install redis-server\) or set REDIS_URL/);
        return true;
      },
    );
  });

  test("a server that dies during start-up is reported with its log", async () => {
    // /bin/sh rejects redis-server's options and exits, writing the complaint to the log.
    await assert.rejects(
      startEmbeddedRedis({ dataDir: tempDir(), logger: captureLogger(), binary: "/bin/sh", readyTimeoutMs: 2_000 }),
      (err: Error) => {
        assert.match(err.message, /did not become ready: it exited during start-up/);
        assert.match(err.message, /last lines of .*redis\.log:\n.*\S/);
        return true;
      },
    );
  });
});

describe("redisOptionsFromUrl", () => {
  test("redis:// with credentials, port and db", () => {
    assert.deepEqual(redisOptionsFromUrl("redis://user:p%40ss@example.test:6380/3"), {
      host: "example.test",
      port: 6380,
      username: "user",
      password: "p@ss",
      db: 3,
    });
    assert.deepEqual(redisOptionsFromUrl("redis://127.0.0.1"), { host: "127.0.0.1", port: 6379 });
    assert.deepEqual(redisOptionsFromUrl("redis://[::1]:7000"), { host: "::1", port: 7000 });
  });

  test("rediss:// turns TLS on", () => {
    assert.deepEqual(redisOptionsFromUrl("rediss://:secret@cache.test/1"), {
      host: "cache.test",
      port: 6379,
      password: "secret",
      db: 1,
      tls: { servername: "cache.test" },
    });
  });

  test("unix:// gives a socket path", () => {
    assert.deepEqual(redisOptionsFromUrl("unix:///var/run/redis/redis.sock"), { path: "/var/run/redis/redis.sock" });
    assert.deepEqual(redisOptionsFromUrl("unix:///tmp/a%20b/r.sock?db=2&password=pw"), {
      path: "/tmp/a b/r.sock",
      db: 2,
      password: "pw",
    });
  });

  test("invalid URLs fail with a clear message and no password", () => {
    assert.throws(() => redisOptionsFromUrl("localhost:6379"), /unsupported scheme|invalid Redis URL/);
    assert.throws(() => redisOptionsFromUrl("not a url"), /invalid Redis URL "not a url"/);
    assert.throws(() => redisOptionsFromUrl("http://x"), /unsupported scheme "http:"/);
    assert.throws(() => redisOptionsFromUrl("redis://:hunter2@host/abc"), (err: Error) => {
      assert.match(err.message, /database index "abc"/);
      assert.doesNotMatch(err.message, /hunter2/);
      return true;
    });
    assert.throws(() => redisOptionsFromUrl("unix://host/tmp/r.sock"), /three slashes/);
  });
});

describe("startTestRedis (test helper)", () => {
  test("a throwaway TCP redis-server that stop() removes", async () => {
    const redis = await startTestRedis();
    assert.match(redis.url, /^redis:\/\/127\.0\.0\.1:\d+$/);
    const pid = await withClient(redis.url, async (c) => {
      assert.equal(await c.ping(), "PONG");
      assert.deepEqual(await c.config("GET", "appendonly"), ["appendonly", "no"]);
      return Number(/process_id:(\d+)/.exec(await c.info("server"))![1]);
    });
    await redis.stop();
    assert.equal(isProcessAlive(pid), false);
  });
});
