// A tiny RESP client for probing a Redis that may be dead or still loading: one command, one reply,
// no reconnects (ioredis would retry). Used at start-up (is it ready? is an orphan answering?) and by tests.
import { createConnection } from "node:net";
import { sleep } from "./process-utils";

/** Until `socketPath` answers PING with PONG; rejects when the process exits or `timeoutMs` passes. */
export async function waitUntilReady(
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

