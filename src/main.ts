#!/usr/bin/env node
// The command line: start (all in one), serve (API + reconciler), worker, schema.
import 'reflect-metadata';
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { startApiServer } from './api/server';
import { LiveEvents } from './api/live';
import { createSchema, schemaSdl } from './api/schema';
import { openCore } from './app';
import { ConfigError, loadConfig } from './config/config';
import { createLogger } from './logger';

const USAGE = `usage: orchestrator <command>
  start    API, reconciler and a worker in one process, on the embedded defaults (the default command)
  serve    API and reconciler only (scaled mode: run workers with "worker")
  schema   write schema.graphql from the code`;

async function serve(withWorker: boolean): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  const core = await openCore(config, logger);
  const live = new LiveEvents(core.events, core.services.status, logger);
  const api = await startApiServer({
    schema: await createSchema(),
    services: core.services,
    live,
    logger,
    host: config.host,
    port: config.port,
    maxRequestBytes: config.maxRequestBytes,
    ready: async () => {
      await core.db.ping();
      await core.redis.ping();
    },
  }).catch(async (e) => {
    await core.close();
    throw e;
  });
  logger.info({ url: `${api.url}/graphql`, mode: withWorker ? 'start' : 'serve' }, 'orchestrator listening');

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(130);
    }
    stopping = true;
    logger.info({ signal }, 'shutting down');
    const deadline = setTimeout(() => {
      logger.error('shutdown took longer than 20 s: exiting');
      process.exit(1);
    }, 20_000);
    deadline.unref();
    await api.close().catch((err: Error) => logger.warn({ err }, 'closing the API'));
    await core.close();
    logger.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

async function main(argv: string[]): Promise<void> {
  const command = argv[0] ?? 'start';
  switch (command) {
    case 'start':
      return serve(true);
    case 'serve':
      return serve(false);
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
  if (e instanceof ConfigError) console.error(e.message);
  else console.error(`orchestrator: ${(e as Error).stack ?? e}`);
  process.exit(1);
});
