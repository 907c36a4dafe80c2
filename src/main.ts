#!/usr/bin/env node
// The command line: start (all in one), serve (API + reconciler), worker, submit, schema, help.
import 'reflect-metadata';
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Core } from './app';
import { ConfigError, loadConfig } from './config/config';
import { createLogger } from './logger';
import { CliError } from './cli/api-client';
import { helpText, parseArgs, UsageError, type CommandSpec } from './cli/args';
import { oneLine } from './cli/one-line';
import { PlanFileError } from './cli/plan-file';
import { submitArgs, submitCommand } from './cli/submit';
import { COMMANDS, TOP_USAGE } from './cli/usage';
import type { Reconciler } from './services/reconciler';
import type { MaintenanceJob } from './services/maintenance';
import type { RunningWorker } from './worker/worker';
import { bestEffort } from './infra/best-effort';
import { listenRefusal } from './config/auth';

interface Roles {
  api: boolean;
  worker: boolean;
}

async function run(roles: Roles): Promise<void> {
  // What this process creates (DATA_DIR, the database, Redis's files, artifacts, sandbox state) is
  // its user's alone; the few files others must read (sandbox scripts) get their mode explicitly.
  process.umask(0o077);
  // loaded here, not at the top: `submit` and `--help` start in a fraction of the time without them
  const [{ createMaintenance, createReconciler, openCore, serveApi }, { startWorker }] = await Promise.all([import('./app.js'), import('./worker/worker.js')]);
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  // before anything is opened: an open API on a network address is refused
  const refused = roles.api ? listenRefusal(config.auth, config.host) : null;
  if (refused) throw new Error(refused);
  let core: Core | null = null;
  let api: { url: string; close(): Promise<void> } | null = null;
  let reconciler: Reconciler | null = null;
  let maintenance: MaintenanceJob | null = null;
  let worker: RunningWorker | null = null;
  const quietly = (p: Promise<void> | undefined) => p?.catch((err: Error) => logger.warn({ err }, 'error while stopping'));
  // no new requests, then no new tests (running ones finish or are handed back), then the rest
  const stopAll = async () => {
    await quietly(api?.close());
    await quietly(worker?.stop());
    await quietly(reconciler?.stop());
    await quietly(maintenance?.stop());
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
    await bestEffort(logger, 'start-up (interrupted by the signal)', () => startup);
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
      maintenance = createMaintenance(core);
      maintenance.start();
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

/** `submit`: every failure is one line (or, for a plan file, one line per problem) and exit code 2. */
async function submit(spec: CommandSpec, argv: string[]): Promise<never> {
  try {
    const parsed = parseArgs(spec, argv);
    if (parsed.help) {
      console.log(helpText(spec));
      process.exit(0);
    }
    const args = submitArgs(parsed, { ORCHESTRATOR_TOKEN: process.env.ORCHESTRATOR_TOKEN });
    // Ctrl-C or SIGTERM (a CI job cancelled): the plan is cancelled (unless --no-cancel), then exit 2;
    // a second signal exits at once
    const stop = new AbortController();
    const onSignal = (signal: NodeJS.Signals) => {
      if (stop.signal.aborted) process.exit(2);
      stop.abort(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    const term = { write: (t: string) => process.stdout.write(t), isTTY: process.stdout.isTTY === true, columns: process.stdout.columns };
    process.exit(await submitCommand(args, { out: (l) => console.log(l), term, stop: stop.signal }));
  } catch (e) {
    if (e instanceof UsageError) console.error(`submit: ${e.message}`);
    else if (e instanceof PlanFileError) console.error(e.lines.join('\n'));
    else if (e instanceof CliError) console.error(e.message);
    else console.error(`submit: ${process.env.LOG_LEVEL === 'debug' ? ((e as Error).stack ?? e) : oneLine(String((e as Error)?.message ?? e))}`);
    process.exit(2);
  }
}

async function main(argv: string[]): Promise<void> {
  const command = argv[0] ?? 'start';
  if (command === 'help' || command === '--help' || command === '-h') {
    const topic = argv[1] === undefined ? undefined : COMMANDS[argv[1]];
    if (argv[1] !== undefined && !topic) {
      console.error(`orchestrator: no command ${JSON.stringify(oneLine(argv[1], 60))} (orchestrator --help lists them)`);
      process.exit(2);
    }
    console.log(topic ? helpText(topic) : TOP_USAGE);
    return;
  }
  const spec = COMMANDS[command];
  if (!spec) {
    console.error(`orchestrator: unknown ${command.startsWith('-') ? 'option' : 'command'} ${JSON.stringify(oneLine(command, 60))} (orchestrator --help lists the commands)`);
    process.exit(2);
  }
  if (command === 'submit') return submit(spec, argv.slice(1));
  let parsed;
  try {
    parsed = parseArgs(spec, argv.slice(1));
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`${command}: ${e.message}`);
    process.exit(2);
  }
  if (parsed.help) {
    console.log(helpText(spec)); // and nothing is opened
    return;
  }
  switch (command) {
    case 'start':
      return run({ api: true, worker: true });
    case 'serve':
      return run({ api: true, worker: false });
    case 'worker':
      return run({ api: false, worker: true });
    case 'images': {
      const config = loadConfigOrExit();
      const { imagesCommand } = await import('./cli/images.js');
      // Ctrl-C or SIGTERM stops the running tool (its own process group) and removes its build directory.
      const stop = new AbortController();
      const onSignal = (signal: NodeJS.Signals) => {
        if (stop.signal.aborted) process.exit(130);
        stop.abort(new Error(`interrupted by ${signal}`));
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      const code = await imagesCommand(config, parsed.positionals, { out: (l) => console.log(l), err: (l) => console.error(l) }, stop.signal);
      process.exit(stop.signal.aborted ? 130 : code);
    }
    case 'token': {
      const { tokenArgs, tokenCommand } = await import('./cli/token.js');
      let args;
      try {
        args = tokenArgs(parsed);
      } catch (e) {
        if (!(e instanceof UsageError)) throw e;
        console.error(`token: ${e.message}`);
        process.exit(2);
      }
      const config = loadConfigOrExit();
      process.umask(0o077); // the embedded database may be created here
      const code = await tokenCommand(config, args, { out: (l) => console.log(l), err: (l) => console.error(l) }, createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel));
      process.exit(code);
    }
    case 'schema': {
      const out = resolve(parsed.positionals[0] ?? 'schema.graphql');
      writeFileSync(out, await (await import('./api/schema.js')).schemaSdl());
      console.log(`wrote ${out}`);
      return;
    }
  }
}

main(process.argv.slice(2)).catch((e: unknown) => {
  // start-up errors are for people: the message, not a stack (LOG_LEVEL=debug shows the stack)
  if (e instanceof ConfigError) console.error(e.message);
  else console.error(`orchestrator: ${process.env.LOG_LEVEL === 'debug' ? ((e as Error).stack ?? e) : (e as Error).message}`);
  process.exit(1);
});

/** The configuration, or its problems on stderr and exit 2 (a command's own configuration errors). */
function loadConfigOrExit(): ReturnType<typeof loadConfig> {
  try {
    return loadConfig();
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    console.error(e.message);
    process.exit(2);
  }
}
