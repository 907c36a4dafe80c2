// Every command's command line and help text, in one place (main.ts dispatches, --help prints these).

import { CONFIG_VARIABLES } from '../config/config';
import type { CommandSpec } from './args';
import { IMAGES_COMMAND } from './images';
import { TOKEN_COMMAND } from './token';

/** Lines of at most `width` characters holding `words` separated by ", ". */
function wrap(words: readonly string[], indent: string, width = 100): string {
  const lines: string[] = [];
  let line = '';
  for (const w of words) {
    const next = line ? `${line}, ${w}` : w;
    if (indent.length + next.length > width && line) {
      lines.push(`${indent}${line},`);
      line = w;
    } else line = next;
  }
  if (line) lines.push(`${indent}${line}`);
  return lines.join('\n');
}

const environment = (main: string) =>
  [
    'environment:',
    '  Configured by environment variables only, all optional; every one with its default and meaning',
    '  is in README.md "Configuration" and .env.example. ' + main + '. All of them:',
    wrap(CONFIG_VARIABLES, '    '),
    '  A problem in them is reported at once and the process exits 1 before opening anything.',
  ].join('\n');

export const START: CommandSpec = {
  name: 'start',
  summary: 'Runs the API, the reconciler and a worker in one process (the default command): one machine, zero setup.',
  description: [
    'Listens on http://HOST:PORT/graphql (127.0.0.1:4000). Without DATABASE_URL the database is embedded',
    '(PGlite in DATA_DIR); without REDIS_URL it starts its own redis-server there. SIGTERM or Ctrl-C stops',
    'gracefully (running tests finish or go back to the queue); a second signal exits at once.',
  ].join('\n'),
  options: [],
  sections: [environment('Most used: PORT, HOST, DATA_DIR, DATABASE_URL, REDIS_URL,\n  POOLS, WORKER_POOLS')],
};

export const SERVE: CommandSpec = {
  name: 'serve',
  summary: 'Runs the API and the reconciler, no worker (scaled mode: run workers with "orchestrator worker").',
  description: [
    'Any number of them may share one PostgreSQL server (DATABASE_URL) and one Redis (REDIS_URL, with the',
    'same REDIS_PREFIX) behind a load balancer. SIGTERM or Ctrl-C stops gracefully.',
  ].join('\n'),
  options: [],
  sections: [environment('Most used: PORT, HOST, DATABASE_URL, REDIS_URL,\n  REDIS_PREFIX, POOLS')],
};

export const WORKER: CommandSpec = {
  name: 'worker',
  summary: 'Runs a worker: takes the tests of its pools from the queues and runs them in sandboxes.',
  description: [
    'Needs bubblewrap and the base image (npm run images). Serves every configured pool it has a driver',
    'for, or those named in WORKER_POOLS. SIGTERM or Ctrl-C stops taking tests and lets running ones finish.',
  ].join('\n'),
  options: [],
  sections: [environment('Most used: DATABASE_URL, REDIS_URL,\n  REDIS_PREFIX, POOLS, WORKER_POOLS, IMAGE_DIR, SANDBOX_USER')],
};

export const SUBMIT_TIMEOUT_SECONDS = 3600;
export const DEFAULT_URL = 'http://127.0.0.1:4000';

export const SUBMIT: CommandSpec = {
  name: 'submit',
  positionals: [{ name: 'PLAN_FILE', required: true, help: 'the plan: JSON or YAML in the shape of SubmitPlanInput (schema.graphql)' }],
  summary: 'Submits a plan; with --wait follows it live, prints what failed, writes JUnit XML and exits by the result.',
  description: [
    'PLAN_FILE is read as JSON when it ends in .json, as YAML when it ends in .yaml or .yml, otherwise as JSON',
    'when it starts with "{" or "[" and as YAML if not. It is checked against the server\'s rules before',
    'anything is sent; each problem is printed as FILE:LINE: FIELD: MESSAGE, for example',
    '  plan.yaml:14: tests[3].timeoutSeconds: must be an integer from 1 to 86400 (got 100000)',
    'The server may still refuse it for what only it knows (MAX_TESTS_PER_PLAN, no pool for a test).',
    'The plan\'s "bundle:" may name a directory or an archive, relative to the plan file: it is uploaded',
    '(POST /bundles) before the plan is submitted with its id, as with --bundle.',
    '',
    'With --wait it follows the plan over a WebSocket, opened before the plan is submitted (a refused token',
    'leaves no plan): on a terminal one progress line rewritten in place (counts by status, elapsed time)',
    'and a line for each test that did not pass; otherwise (a CI log) one plain line per status change of a',
    'test or of the plan. At the end, each FAILED, TIMED_OUT and ERROR test\'s message and the last 20',
    'lines of its stderr, then the counts.',
    '',
    'A server with AUTH=on wants a token (orchestrator token create): --token TOKEN or, better (a command',
    'line is visible to other users of the machine), the environment variable ORCHESTRATOR_TOKEN. It is',
    'sent as "Authorization: Bearer TOKEN" and in the WebSocket\'s connection_init, and never printed.',
    'Ctrl-C or SIGTERM cancels the plan (cancelPlan) before exiting, as does --timeout; --no-cancel leaves',
    'it running. A second signal exits at once.',
  ].join('\n'),
  options: [
    { name: 'url', value: 'URL', help: `the orchestrator, http:// or https:// (default ${DEFAULT_URL}; /graphql is added)` },
    { name: 'token', value: 'TOKEN', help: 'the API token (default: $ORCHESTRATOR_TOKEN; none: no Authorization header)' },
    { name: 'wait', help: 'follow the plan until it ends (over a WebSocket); exit 0 only if every test passed' },
    { name: 'junit', value: 'FILE', help: 'with --wait: write a JUnit XML report of every test to FILE' },
    {
      name: 'timeout',
      value: 'SECONDS',
      help: `the most the whole command may take: upload, submit and, with --wait, the plan\n(default ${SUBMIT_TIMEOUT_SECONDS}); then the plan is cancelled (unless --no-cancel) and it exits 2`,
    },
    { name: 'no-cancel', help: 'on --timeout, Ctrl-C or SIGTERM: leave the plan running (default: cancel it)' },
    {
      name: 'bundle',
      value: 'DIR|ARCHIVE',
      help: 'the files every test starts with in /work: a directory (packed and uploaded), a .tar,\n.tar.gz or .tar.zst archive (uploaded as it is) or a bundle id; wins over the plan\'s "bundle:"',
    },
  ],
  sections: [
    [
      'exit codes:',
      '  0  the plan was accepted (without --wait), or every test passed (with --wait)',
      '  1  with --wait: a test did not pass (FAILED, TIMED_OUT, ERROR or CANCELLED)',
      '  2  it could not do its job: a usage error, a bad plan file, the server unreachable, an HTTP or',
      '     GraphQL error (BAD_USER_INPUT, UNSCHEDULABLE, ...), the token refused (HTTP 401,',
      '     UNAUTHENTICATED, FORBIDDEN, WebSocket close 4401), the WebSocket lost while waiting, the',
      '     --timeout reached, or interrupted (SIGINT, SIGTERM). The reason is one line on stderr.',
    ].join('\n'),
  ],
};

export const SCHEMA: CommandSpec = {
  name: 'schema',
  positionals: [{ name: 'FILE', required: false, help: 'where to write it (default schema.graphql)' }],
  summary: 'Writes the GraphQL schema (SDL) generated from the code. Opens no database or Redis.',
  options: [],
};

export const COMMANDS: Record<string, CommandSpec> = { start: START, serve: SERVE, worker: WORKER, submit: SUBMIT, images: IMAGES_COMMAND, token: TOKEN_COMMAND, schema: SCHEMA };

export const TOP_USAGE = `usage: orchestrator [COMMAND] [--help]

commands:
  start    API, reconciler and a worker in one process, on the embedded defaults (the default command)
  serve    API and reconciler only (scaled mode: run workers with "worker")
  worker   a worker for the configured pools (WORKER_POOLS to choose some)
  submit   PLAN_FILE [--url URL] [--token TOKEN] [--wait] [--junit FILE] [--timeout SECONDS] [--no-cancel]
           [--bundle DIR|ARCHIVE]: submit a plan (JSON or YAML) with the files its tests start with,
           follow it live, write JUnit XML; exit 0 all passed, 1 a test did not pass, 2 could not do its job
  images   [NAME...]: build the configured environment images (npm run images); exit 0 ready, 1 a build
           failed, 2 an image that is not configured
  token    create --name NAME --role VIEWER|SUBMITTER|ADMIN | list | revoke ID|NAME: the API tokens
           (AUTH=on), on the configured database directly; create prints the secret once
  schema   [FILE]: write the GraphQL schema generated from the code
  help     [COMMAND]: this text, or the help of one command

"orchestrator COMMAND --help" prints a command's options (and, for start, serve and worker, the
environment variables that configure them).`;
