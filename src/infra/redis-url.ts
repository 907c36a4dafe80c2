// Redis connection URLs: parsing them into ioredis options, making one for a unix socket, redacting one for logs.
import { resolve } from "node:path";
import type { RedisOptions } from "ioredis";

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
