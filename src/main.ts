#!/usr/bin/env node
// The command line: start (all in one), serve (API + reconciler), worker, schema.
import 'reflect-metadata';
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { schemaSdl } from './api/schema';
import { createReconciler, openCore, serveApi, type Core } from './app';
import { ConfigError, loadConfig } from './config/config';
import { createLogger } from './logger';
import { parseSubmitArgs, submitCommand } from './cli/submit';
import type { Reconciler } from './services/reconciler';
import { startWorker, type RunningWorker } from './worker/worker';

const USAGE = `usage: orchestrator <command>
  start    API, reconciler and a worker in one process, on the embedded defaults (the default command)
  serve    API and reconciler only (scaled mode: run workers with "worker")
  worker   a worker for the configured pools (WORKER_POOLS to choose some)
  submit   PLAN.json [--url URL] [--wait] [--junit OUT]: submit a plan, follow it live, exit 1 unless all passed
  schema   write schema.graphql from the code`;

interface Roles {
  api: boolean;
  worker: boolean;
}

async function run(roles: Roles): Promise<void> {
  // What this process creates (DATA_DIR, the database, Redis's files, artifacts, sandbox state) is
  // its user's alone; the few files others must read (sandbox scripts) get their mode explicitly.
  process.umask(0o077);
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  let core: Core | null = null;
  let api: { url: string; close(): Promise<void> } | null = null;
  let reconciler: Reconciler | null = null;
  let worker: RunningWorker | null = null;
  const quietly = (p: Promise<void> | undefined) => p?.catch((err: Error) => logger.warn({ err }, 'error while stopping'));
  // no new requests, then no new tests (running ones finish or are handed back), then the rest
  const stopAll = async () => {
    await quietly(api?.close());
    await quietly(worker?.stop());
    await quietly(reconciler?.stop());
    await quietly(core?.close());
  };
  // Signals are handled from the first moment: one that arrives during start-up stops what has
  // started so far; a second one exits at once.
  let stopping = false;
  let startup: Promise<void> = Promise.resolve();
  const shutdown = async (signal: string) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(130);
    }
    stopping = true;
    logger.info({ signal }, 'shutting down');
    const deadline = setTimeout(() => {
      logger.error('shutdown took longer than 30 s: exiting');
      process.exit(1);
    }, 30_000);
    deadline.unref();
    await startup.catch(() => undefined);
    await stopAll();
    logger.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  startup = (async () => {
    core = await openCore(config, logger);
    if (stopping) return;
    if (roles.api) {
      api = await serveApi(core, { host: config.host, port: config.port });
      reconciler = createReconciler(core);
      await reconciler.start();
      logger.info({ url: `${api.url}/graphql` }, 'orchestrator API listening');
    }
    if (roles.worker && !stopping) worker = await startWorker(core, { pools: config.workerPools });
  })();
  try {
    await startup;
  } catch (e) {
    if (stopping) return; // the signal handler stops what started and exits
    await stopAll();
    throw e;
  }
}

async function main(argv: string[]): Promise<void> {
  const command = argv[0] ?? 'start';
  switch (command) {
    case 'start':
      return run({ api: true, worker: true });
    case 'serve':
      return run({ api: true, worker: false });
    case 'worker':
      return run({ api: false, worker: true });
    case 'submit':
      process.exit(await submitCommand(parseSubmitArgs(argv.slice(1))));
    // eslint-disable-next-line no-fallthrough
    case 'schema': {
      const out = resolve(argv[1] ?? 'schema.graphql');
      writeFileSync(out, await schemaSdl());
      console.log(`wrote ${out}`);
      return;
    }
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE);
      return;
    default:
      console.error(`unknown command "${command}"\n${USAGE}`);
      process.exit(2);
  }
}

main(process.argv.slice(2)).catch((e: unknown) => {
  // start-up errors are for people: the message, not a stack (LOG_LEVEL=debug shows the stack)
  if (e instanceof ConfigError) console.error(e.message);
  else console.error(`orchestrator: ${process.env.LOG_LEVEL === 'debug' ? ((e as Error).stack ?? e) : (e as Error).message}`);
  process.exit(1);
});
