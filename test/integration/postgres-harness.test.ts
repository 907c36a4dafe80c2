import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Client } from "pg";
import { isProcessAlive, parentPid, waitForPidExit } from "../../src/infra/process-utils";
import { startTestPostgres, type TestPostgres } from "../helpers/postgres";

async function sql<T extends Record<string, unknown>>(url: string, text: string): Promise<T[]> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text)).rows;
  } finally {
    await client.end();
  }
}

describe("startTestPostgres", () => {
  let pg: TestPostgres;
  let startMs = 0;
  before(async () => {
    const t0 = Date.now();
    pg = await startTestPostgres();
    startMs = Date.now() - t0;
  });
  after(async () => {
    await pg?.stop();
  });

  test("answers select 1 and is PostgreSQL 15 or newer", async () => {
    console.log(`postgres harness start: ${startMs} ms`);
    assert.deepEqual(await sql(pg.url, "select 1 as one"), [{ one: 1 }]);
    const [{ server_version_num }] = await sql<{ server_version_num: string }>(pg.url, "show server_version_num");
    assert.ok(Number(server_version_num) >= 150000, server_version_num);
  });

  test("createDatabase gives fresh, isolated databases", async () => {
    const a = await pg.createDatabase();
    const b = await pg.createDatabase("harness_named");
    assert.notEqual(a, b);
    assert.match(b, /\/harness_named$/);
    await sql(a, "create table t (id int primary key); insert into t values (1)");
    assert.deepEqual(await sql(a, "select id from t"), [{ id: 1 }]);
    const inB = await sql<{ n: string }>(b, "select count(*)::text as n from information_schema.tables where table_name = 't'");
    assert.deepEqual(inB, [{ n: "0" }]);
    await assert.rejects(pg.createDatabase("Bad-Name"), /invalid database name/);
  });

  test("TEST_DATABASE_URL: uses that server and drops the databases it created", async () => {
    const saved = process.env.TEST_DATABASE_URL;
    process.env.TEST_DATABASE_URL = pg.url;
    let external: TestPostgres;
    try {
      external = await startTestPostgres();
    } finally {
      if (saved === undefined) delete process.env.TEST_DATABASE_URL;
      else process.env.TEST_DATABASE_URL = saved;
    }
    assert.equal(external.url, pg.url);
    const dbUrl = await external.createDatabase("harness_external");
    assert.deepEqual(await sql(dbUrl, "select 2 as two"), [{ two: 2 }]);
    await external.stop();
    const left = await sql(pg.url, "select 1 from pg_database where datname = 'harness_external'");
    assert.equal(left.length, 0);
    assert.deepEqual(await sql(pg.url, "select 1 as one"), [{ one: 1 }], "the server itself keeps running");
  });
});

describe("stopping", () => {
  test("stop() leaves no postgres process and removes its files", async () => {
    const pg = await startTestPostgres();
    const client = new Client({ connectionString: pg.url });
    await client.connect();
    client.on("error", () => {}); // the server goes away under this connection
    const [{ pid: backend, dir }] = (
      await client.query<{ pid: number; dir: string }>("select pg_backend_pid() as pid, current_setting('data_directory') as dir")
    ).rows;
    const postmaster = parentPid(backend)!;
    assert.ok(isProcessAlive(postmaster));
    await pg.stop();
    await client.end().catch(() => {});
    assert.equal(isProcessAlive(postmaster), false, "postmaster still running");
    assert.equal(isProcessAlive(backend), false, "backend still running");
    assert.equal(existsSync(dir), false, "data dir not removed");
    await pg.stop(); // idempotent
  });

  test("a test process killed without stop() does not leave its server behind", async () => {
    const helper = join(__dirname, "../helpers/postgres.js");
    const script = `
      const { startTestPostgres } = require(${JSON.stringify(helper)});
      const { Client } = require("pg");
      (async () => {
        const pg = await startTestPostgres();
        const c = new Client({ connectionString: pg.url });
        await c.connect();
        const r = await c.query("select pg_backend_pid() as pid, current_setting('data_directory') as dir");
        await c.end();
        process.stdout.write(JSON.stringify(r.rows[0]) + "\\n");
        setInterval(() => {}, 1000);
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"], cwd: join(__dirname, "../..") });
    const info = await new Promise<{ pid: number; dir: string }>((resolve, reject) => {
      let out = "";
      child.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        if (out.includes("\n")) resolve(JSON.parse(out.split("\n")[0]!) as { pid: number; dir: string });
      });
      child.once("exit", (code) => reject(new Error(`child exited early (${code})`)));
    });
    const postmaster = parentPid(info.pid)!;
    child.kill("SIGKILL");
    assert.ok(await waitForPidExit(postmaster, 15_000), "postmaster outlived its SIGKILLed test process");
    const deadline = Date.now() + 5_000;
    while (existsSync(info.dir) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(existsSync(info.dir), false, "data dir left behind");
  });
});
