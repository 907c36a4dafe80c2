// The command line as CI runs it: the built CLI (`node dist/src/main.js ...`) as a child process, its
// exact lines on stdout/stderr and its exit code (0 all passed or accepted, 1 a test did not pass, 2 it
// could not do its job), against nothing listening, broken HTTP servers, a real API, and bad plan files.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createConnection, createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { WebSocketServer } from 'ws';
import { findFreePort, sleep } from '../../src/infra/process-utils';
import { MAIN_JS } from '../helpers/orchestrator-process';
import { startTestRedis, type TestRedis } from '../helpers/redis';
import { startTestServer, type TestServer } from '../helpers/server';
import { symlink, tarOf } from '../helpers/tar-archives';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface Cli {
  /** resolves when the process has ended */
  done: Promise<Run>;
  stdout(): string;
  kill(signal: NodeJS.Signals): void;
}

function startCli(args: string[], env: Record<string, string> = {}): Cli {
  const child = spawn(process.execPath, [MAIN_JS, ...args], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: tmpdir(), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const killer = setTimeout(() => child.kill('SIGKILL'), 120_000); // a hang fails the test instead of hanging it
  const done = new Promise<Run>((resolve) =>
    child.on('close', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr });
    }),
  );
  return { done, stdout: () => stdout, kill: (signal) => child.kill(signal) };
}

const cli = (...args: string[]) => startCli(args).done;

/** Exactly one line on stderr, nothing on stdout, exit code 2. */
function expectOneErrorLine(r: Run, line: string) {
  assert.equal(r.stderr, `${line}\n`, `stdout: ${r.stdout}`);
  assert.equal(r.stdout, '');
  assert.equal(r.code, 2);
}

let dir: string;
const plan = (name: string, content: string) => {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
};
const GOOD = JSON.stringify({ name: 'ok', tests: [{ name: 'a', type: 'UNIT', script: 'true' }] });

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'orch-cli-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

async function listen(server: HttpServer | NetServer): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as { port: number }).port;
}

describe('submit: a server it cannot reach or that does not speak GraphQL', () => {
  it('nothing listening: "cannot reach URL: connection refused", exit 2', async () => {
    const port = await findFreePort();
    expectOneErrorLine(await cli('submit', plan('good.json', GOOD), '--url', `http://127.0.0.1:${port}`), `cannot reach http://127.0.0.1:${port}: connection refused`);
    // the same with the default URL's form given with /graphql and a trailing slash; with --wait the
    // WebSocket is opened first (before a plan exists)
    expectOneErrorLine(await cli('submit', plan('good.json', GOOD), `--url=http://127.0.0.1:${port}/graphql/`), `cannot reach http://127.0.0.1:${port}: connection refused`);
    expectOneErrorLine(await cli('submit', plan('good.json', GOOD), '--wait', `--url=http://127.0.0.1:${port}/graphql/`), `cannot open the WebSocket ws://127.0.0.1:${port}/graphql: connection refused`);
  });

  it('a name DNS does not know: one line naming the host, exit 2', async () => {
    const r = await cli('submit', plan('good.json', GOOD), '--url', 'http://orchestrator.invalid:4000');
    // NXDOMAIN, or (on a machine whose resolver cannot be reached at all) no answer from DNS
    const line = /could not be looked up/.test(r.stderr)
      ? 'cannot reach http://orchestrator.invalid:4000: the name "orchestrator.invalid" could not be looked up (DNS did not answer)'
      : 'cannot reach http://orchestrator.invalid:4000: host "orchestrator.invalid" not found (DNS)';
    expectOneErrorLine(r, line);
  });

  it('a server that never answers: one line after --timeout, exit 2', async () => {
    const sockets = new Set<Socket>();
    const silent = createNetServer((s) => sockets.add(s));
    const port = await listen(silent);
    try {
      expectOneErrorLine(await cli('submit', plan('good.json', GOOD), '--url', `http://127.0.0.1:${port}`, '--timeout', '1'), `cannot reach http://127.0.0.1:${port}: no answer within 1 s`);
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
    }
  });

  it('HTTP errors and answers that are not GraphQL: one line with the status, exit 2', async () => {
    const answers: Record<string, [number, string, string]> = {
      '/bad-gateway/graphql': [502, 'text/html', '<html><body>\n<h1>502 Bad Gateway</h1>\n</body></html>'],
      '/text/graphql': [200, 'text/plain; charset=utf-8', 'hello\u001b[2J'],
      '/json/graphql': [200, 'application/json', '{"hello": "world"}'],
      '/errors/graphql': [400, 'application/json', '{"errors": [{"message": "Variable \\"$input\\" got invalid value\\n\\u001b[31m", "extensions": {"code": "BAD_USER_INPUT"}}, {"message": "x"}]}'],
      '/forbidden/graphql': [403, 'application/json', '{"errors": [{"message": "forbidden"}]}'],
    };
    const http = createHttpServer((req, res) => {
      const [status, type, body] = answers[req.url ?? ''] ?? [404, 'text/html', 'Cannot POST'];
      res.writeHead(status, { 'content-type': type }).end(body);
    });
    const port = await listen(http);
    const base = `http://127.0.0.1:${port}`;
    const file = plan('good.json', GOOD);
    try {
      expectOneErrorLine(await cli('submit', file, '--url', `${base}/bad-gateway`), `${base}/bad-gateway/graphql answered HTTP 502 Bad Gateway (text/html), not a GraphQL response`);
      expectOneErrorLine(await cli('submit', file, '--url', `${base}/text`), `${base}/text/graphql answered HTTP 200 OK (text/plain), not a GraphQL response`);
      expectOneErrorLine(await cli('submit', file, '--url', `${base}/json`), `${base}/json/graphql answered HTTP 200 OK without data, not a GraphQL response`);
      expectOneErrorLine(await cli('submit', file, '--url', `${base}/nowhere`), `${base}/nowhere/graphql answered HTTP 404 Not Found (text/html), not a GraphQL response`);
      expectOneErrorLine(await cli('submit', file, '--url', `${base}/errors`), 'BAD_USER_INPUT: Variable "$input" got invalid value\\n\\u001b[31m (and 1 more error)');
      expectOneErrorLine(await cli('submit', file, '--url', `${base}/forbidden`), "HTTP 403: forbidden (the token's role does not allow it)");
    } finally {
      http.close();
    }
  });
});

describe('submit: usage and plan files, refused before anything is sent', () => {
  let requests = 0;
  let url = '';
  const counter = createHttpServer((_req, res) => {
    requests++;
    res.writeHead(500).end();
  });
  before(async () => {
    url = `http://127.0.0.1:${await listen(counter)}`;
  });
  after(() => counter.close());

  it('a bad YAML plan: FILE:LINE: FIELD: MESSAGE for each problem, exit 2, no request', async () => {
    const yaml = [
      'name: nightly', // 1
      'tests:',
      '  - name: unit',
      '    type: UNIT',
      '    script: npm test', // 5
      '  - name: lint',
      '    type: UNIT',
      '    script: npm run lint',
      '  - name: e2e',
      '    type: INTEGRATION', // 10
      '    script: ./e2e.sh',
      '  - name: slow',
      '    type: PERFORMANCE',
      '    timeoutSeconds: 100000', // 14
      '    script: ./bench.sh',
      '',
    ].join('\n');
    const file = plan('plan.yaml', yaml);
    expectOneErrorLine(await cli('submit', file, '--url', url, '--wait'), `${file}:14: tests[3].timeoutSeconds: must be an integer from 1 to 86400 (got 100000)`);
    const typo = plan('typo.yml', yaml.replace('timeoutSeconds: 100000', 'timeout: 60').replace('type: UNIT', 'type: unit'));
    const r = await cli('submit', typo, '--url', url);
    assert.equal(r.stderr, `${typo}:4: tests[0].type: must be one of UNIT, INTEGRATION, PERFORMANCE, SECURITY (got "unit")\n${typo}:14: tests[3].timeout: is not a field of this input\n`);
    assert.equal(r.code, 2);
    assert.equal(requests, 0);
  });

  it('a bad JSON plan: the line where it stops being JSON, or of the field; exit 2, no request', async () => {
    const broken = plan('broken.json', '{\n  "name": "x",\n  "tests": [\n    {"name": "a", "type": "UNIT", "script": "true"},\n  ]\n}\n');
    expectOneErrorLine(await cli('submit', broken, '--url', url), `${broken}:5: not valid JSON: a "," before "]" (trailing commas are not JSON)`);
    const empty = plan('empty-script.json', JSON.stringify({ name: 'x', tests: [{ name: 'a', type: 'UNIT', script: '' }] }, null, 2));
    expectOneErrorLine(await cli('submit', empty, '--url', url), `${empty}:7: tests[0].script: must not be empty`);
    expectOneErrorLine(await cli('submit', join(dir, 'missing.json'), '--url', url), `${join(dir, 'missing.json')}: cannot read the plan: no such file`);
    assert.equal(requests, 0);
  });

  it('usage errors: one line, exit 2', async () => {
    const file = plan('good.json', GOOD);
    expectOneErrorLine(await cli('submit'), 'submit: PLAN_FILE is missing (orchestrator submit --help)');
    expectOneErrorLine(await cli('submit', file, '--bogus'), 'submit: unknown option --bogus (orchestrator submit --help)');
    expectOneErrorLine(await cli('submit', file, 'other.json'), 'submit: unexpected argument other.json (PLAN_FILE only) (orchestrator submit --help)');
    expectOneErrorLine(await cli('submit', file, '--url'), 'submit: --url needs a value: --url URL (orchestrator submit --help)');
    expectOneErrorLine(await cli('submit', file, '--url', 'ftp://x'), 'submit: --url must be an http:// or https:// URL, not ftp://x');
    expectOneErrorLine(await cli('submit', file, '--url', 'http://u:secret@h'), 'submit: --url must not hold a user name or password');
    expectOneErrorLine(await cli('submit', file, '--junit', 'r.xml'), 'submit: --junit needs --wait (the report is written when the plan has ended)');
    expectOneErrorLine(await cli('submit', file, '--wait', '--junit', join(dir, 'no-such-dir', 'r.xml')), `submit: --junit ${join(dir, 'no-such-dir', 'r.xml')}: the directory ${join(dir, 'no-such-dir')} does not exist`);
    expectOneErrorLine(await cli('submit', file, '--timeout', 'soon'), 'submit: --timeout must be a number of seconds from 0.001 to 86400, not soon');
    expectOneErrorLine(await cli('submit', file, '--wait=yes'), 'submit: --wait takes no value (orchestrator submit --help)');
    expectOneErrorLine(await cli('bogus'), 'orchestrator: unknown command "bogus" (orchestrator --help lists the commands)');
    expectOneErrorLine(await cli('start', '--port', '1'), 'start: unknown option --port (orchestrator start --help)');
    expectOneErrorLine(await cli('schema', 'a', 'b'), 'schema: unexpected argument b (FILE only) (orchestrator schema --help)');
    assert.equal(requests, 0);
  });
});

describe('--help of every command: its usage and every option, exit 0, nothing opened', () => {
  const options: Record<string, string[]> = {
    start: ['--help'],
    serve: ['--help'],
    worker: ['--help'],
    submit: ['PLAN_FILE', '--url URL', '--token TOKEN', 'ORCHESTRATOR_TOKEN', '--wait', '--junit FILE', '--timeout SECONDS', '--no-cancel', '--bundle DIR|ARCHIVE', '--help'],
    schema: ['FILE', '--help'],
  };
  for (const [command, expected] of Object.entries(options)) {
    it(command, async () => {
      for (const flag of ['--help', '-h']) {
        // DATA_DIR and REDIS_URL would be opened by start/serve/worker: --help must not get that far
        const r = await cli(command, 'extra-argument', flag);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stderr, '');
        assert.match(r.stdout, new RegExp(`^usage: orchestrator ${command}`));
        for (const o of expected) assert.ok(r.stdout.includes(o), `${command} ${flag} does not name ${o}:\n${r.stdout}`);
        if (command === 'start' || command === 'serve' || command === 'worker') {
          for (const v of ['PORT', 'DATABASE_URL', 'REDIS_URL', 'POOLS', 'WORKER_POOLS', 'LOG_LEVEL']) assert.ok(r.stdout.includes(v), `${command} --help does not name ${v}`);
          assert.match(r.stdout, /README\.md "Configuration" and \.env\.example/);
        }
      }
    });
  }
  it('the top level and "help COMMAND"', async () => {
    for (const args of [['--help'], ['-h'], ['help']]) {
      const r = await cli(...args);
      assert.equal(r.code, 0);
      assert.match(r.stdout, /^usage: orchestrator \[COMMAND\]/);
      for (const c of ['start', 'serve', 'worker', 'submit', 'schema', 'help']) assert.match(r.stdout, new RegExp(`^  ${c} `, 'm'));
    }
    const r = await cli('help', 'submit');
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^usage: orchestrator submit PLAN_FILE/);
    assert.match(r.stdout, /exit codes:\n {2}0 .*\n {2}1 .*\n {2}2 /);
  });
});

const TOKEN = 'orch_s3cr3t-T0ken.value_never-printed';

/** Neither the token nor a fragment of it long enough to use shows up in what the CLI printed. */
function assertNoToken(r: Run, token = TOKEN) {
  for (const text of [r.stdout, r.stderr]) {
    assert.ok(!text.includes(token), `the token was printed:\n${text}`);
    assert.ok(!text.includes(token.slice(5, 25)), `part of the token was printed:\n${text}`);
  }
}

describe('submit --token: sent on every request, never printed, a refusal is exit 2', () => {
  // a stand-in for a server with AUTH=on: it records what it was sent and answers as the contract says
  const seen: { path: string; authorization?: string }[] = [];
  const inits: unknown[] = [];
  let mode: 'unauthenticated' | 'forbidden' | 'echo' | 'ws-4401' | 'ws-forbidden' = 'unauthenticated';
  const http = createHttpServer((req, res) => {
    seen.push({ path: req.url ?? '', authorization: req.headers.authorization });
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      if (req.url === '/bundles') return res.writeHead(401, { 'content-type': 'application/json' }).end('{"error": "a valid token is needed"}');
      const json = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      if (mode === 'unauthenticated') return json(401, { errors: [{ message: 'a valid token is needed', extensions: { code: 'UNAUTHENTICATED' } }] });
      if (mode === 'forbidden') return json(200, { errors: [{ message: 'a VIEWER token may not submit', extensions: { code: 'FORBIDDEN' } }], data: null });
      // a careless server that quotes what it was sent
      if (mode === 'echo') return json(401, { errors: [{ message: `bad token ${req.headers.authorization}`, extensions: { code: 'UNAUTHENTICATED' } }] });
      if (body.includes('submitPlan')) return json(200, { data: { submitPlan: { id: '00000000-0000-4000-8000-000000000001', name: 'ok', status: 'QUEUED', counts: { total: 1 } } } });
      json(200, { data: { plan: { status: 'QUEUED', counts: { queued: 1, total: 1 } } } });
    });
  });
  const wss = new WebSocketServer({ server: http, handleProtocols: (p) => (p.has('graphql-transport-ws') ? 'graphql-transport-ws' : false) });
  wss.on('connection', (ws, req) => {
    seen.push({ path: `ws ${req.url}`, authorization: req.headers.authorization });
    ws.on('message', (m) => {
      const msg = JSON.parse(m.toString());
      if (msg.type === 'subscribe') ws.send(JSON.stringify({ type: 'error', id: msg.id, payload: [{ message: 'this token may not follow that plan', extensions: { code: 'FORBIDDEN' } }] }));
      if (msg.type !== 'connection_init') return;
      inits.push(msg.payload);
      if (mode === 'ws-forbidden') ws.send(JSON.stringify({ type: 'connection_ack' }));
      else ws.close(4401, 'Unauthorized');
    });
  });
  let base = '';
  before(async () => {
    base = `http://127.0.0.1:${await listen(http)}`;
  });
  after(() => {
    wss.close();
    http.close();
  });

  it('UNAUTHENTICATED (HTTP 401): one line saying how to give a token, exit 2; the header was "Bearer TOKEN"', async () => {
    mode = 'unauthenticated';
    seen.length = 0;
    const r = await cli('submit', plan('good.json', GOOD), '--url', base, '--token', TOKEN);
    expectOneErrorLine(r, 'UNAUTHENTICATED: a valid token is needed (give a valid token with --token or ORCHESTRATOR_TOKEN)');
    assertNoToken(r);
    assert.deepEqual(seen, [{ path: '/graphql', authorization: `Bearer ${TOKEN}` }]);
    // from the environment as well; an empty variable (an unset CI secret) sends no header
    seen.length = 0;
    const fromEnv = await startCli(['submit', plan('good.json', GOOD), '--url', base], { ORCHESTRATOR_TOKEN: TOKEN }).done;
    assert.equal(fromEnv.code, 2);
    assertNoToken(fromEnv);
    await startCli(['submit', plan('good.json', GOOD), '--url', base], { ORCHESTRATOR_TOKEN: '' }).done;
    assert.deepEqual(seen, [
      { path: '/graphql', authorization: `Bearer ${TOKEN}` },
      { path: '/graphql', authorization: undefined },
    ]);
  });

  it('FORBIDDEN: one line, exit 2', async () => {
    mode = 'forbidden';
    const r = await cli('submit', plan('good.json', GOOD), '--url', base, '--token', TOKEN);
    expectOneErrorLine(r, "FORBIDDEN: a VIEWER token may not submit (the token's role does not allow it)");
  });

  it('a server that quotes the token back: "[token]" is printed instead', async () => {
    mode = 'echo';
    const r = await cli('submit', plan('good.json', GOOD), '--url', base, '--token', TOKEN);
    expectOneErrorLine(r, 'UNAUTHENTICATED: bad token Bearer [token] (give a valid token with --token or ORCHESTRATOR_TOKEN)');
    assertNoToken(r);
  });

  it('POST /bundles answering 401: one line, exit 2, the upload carried the token', async () => {
    seen.length = 0;
    const files = join(dir, 'token-bundle');
    mkdirSync(files, { recursive: true });
    writeFileSync(join(files, 'a.txt'), 'a');
    const r = await cli('submit', plan('good.json', GOOD), '--url', base, '--token', TOKEN, '--bundle', files);
    expectOneErrorLine(r, `${base}/bundles refused the upload: HTTP 401 Unauthorized: a valid token is needed (give a valid token with --token or ORCHESTRATOR_TOKEN)`);
    assert.deepEqual(seen, [{ path: '/bundles', authorization: `Bearer ${TOKEN}` }]);
  });

  it('the WebSocket closed with 4401 after connection_init: one line, exit 2; the payload carried the token', async () => {
    mode = 'ws-4401';
    inits.length = 0;
    seen.length = 0;
    const r = await cli('submit', plan('good.json', GOOD), '--url', base, '--token', TOKEN, '--wait');
    // the WebSocket is opened before the plan is submitted: refused, nothing is submitted
    expectOneErrorLine(r, `ws://${base.slice(7)}/graphql refused the token: closed with code 4401 (unauthorized): Unauthorized (give a valid token with --token or ORCHESTRATOR_TOKEN)`);
    assert.deepEqual(seen.map((x) => x.path), ['ws /graphql']);
    assertNoToken(r);
    assert.deepEqual(inits, [{ authorization: `Bearer ${TOKEN}` }]);
  });

  it('a subscription refused with FORBIDDEN: one line, exit 2', async () => {
    mode = 'ws-forbidden';
    const r = await cli('submit', plan('good.json', GOOD), '--url', base, '--token', TOKEN, '--wait');
    assert.equal(r.stderr, `ws://${base.slice(7)}/graphql refused the subscription: FORBIDDEN: this token may not follow that plan (the token's role does not allow it)\n`);
    assert.equal(r.code, 2);
  });

  it('a token a header cannot carry: a usage error that does not quote it, nothing sent', async () => {
    seen.length = 0;
    const bad = `${TOKEN} \u001b[2J`;
    const r = await cli('submit', plan('good.json', GOOD), '--url', base, '--token', bad);
    expectOneErrorLine(r, 'submit: --token must be printable ASCII without spaces (the token is not shown)');
    assertNoToken(r);
    const env = await startCli(['submit', plan('good.json', GOOD), '--url', base], { ORCHESTRATOR_TOKEN: `${TOKEN}\n` }).done;
    expectOneErrorLine(env, 'submit: ORCHESTRATOR_TOKEN must be printable ASCII without spaces (the token is not shown)');
    assert.deepEqual(seen, []);
  });
});

describe('submit against a real API', () => {
  let redis: TestRedis;
  let server: TestServer;
  before(async () => {
    redis = await startTestRedis();
    // no worker: tests stay QUEUED; at most 2 tests a plan, which only the server knows
    server = await startTestServer({ redisUrl: redis.url, env: { MAX_TESTS_PER_PLAN: '2' } });
  });
  after(async () => {
    await server?.stop();
    await redis?.stop();
  });

  it('accepted without --wait: one line on stdout, exit 0; YAML as well as JSON', async () => {
    const r = await cli('submit', plan('good.json', GOOD), '--url', server.url);
    assert.equal(r.stderr, '');
    assert.match(r.stdout, /^plan [0-9a-f-]{36} "ok": 1 tests QUEUED\n$/);
    assert.equal(r.code, 0);
    const y = await cli('submit', plan('good.yaml', 'name: from-yaml\ntests:\n  - name: a\n    type: UNIT\n    script: echo hi\n  - {name: b, type: SECURITY, script: "true"}\n'), '--url', server.url);
    assert.match(y.stdout, /^plan [0-9a-f-]{36} "from-yaml": 2 tests QUEUED\n$/, y.stderr);
    assert.equal(y.code, 0);
  });

  it('UNSCHEDULABLE: one line with the code and the message, exit 2', async () => {
    const file = plan('big.json', JSON.stringify({ name: 'big', tests: [{ name: 'huge', type: 'UNIT', script: 'true', requirements: { cpus: 64 } }] }));
    expectOneErrorLine(await cli('submit', file, '--url', server.url, '--wait'), 'UNSCHEDULABLE: tests[0] "huge": no pool can run it (pool "container" has 1 CPUs, fewer than 64; pool "integration" does not run UNIT tests; pool "perf" does not run UNIT tests; pool "qemu" has 1 CPUs, fewer than 64)');
  });

  it('BAD_USER_INPUT from the server (a limit only it knows): one line, exit 2', async () => {
    const tests = ['a', 'b', 'c'].map((name) => ({ name, type: 'UNIT', script: 'true' }));
    expectOneErrorLine(await cli('submit', plan('three.json', JSON.stringify({ name: 'three', tests })), '--url', server.url), 'BAD_USER_INPUT: invalid plan: tests holds 3 tests, more than the limit of 2');
  });

  it('a token to a server without authentication: ignored, the plan accepted; never printed', async () => {
    const r = await startCli(['submit', plan('good.json', GOOD), '--url', server.url], { ORCHESTRATOR_TOKEN: TOKEN }).done;
    assert.equal(r.stderr, '');
    assert.match(r.stdout, /^plan [0-9a-f-]{36} "ok": 1 tests QUEUED\n$/);
    assert.equal(r.code, 0);
    assertNoToken(r);
  });

  const planStatus = async (id: string) => (await server.core.db.prisma.executionPlan.findUniqueOrThrow({ where: { id } })).status;
  /** Starts `submit --wait` (the tests stay QUEUED: no worker) and resolves once it follows the plan. */
  async function waiting(name: string, extra: string[] = []) {
    const run = startCli(['submit', plan(`${name}.json`, JSON.stringify({ name, tests: [{ name: 'a', type: 'UNIT', script: 'true' }] })), '--url', server.url, '--wait', ...extra], { ORCHESTRATOR_TOKEN: TOKEN });
    for (let i = 0; i < 300 && !run.stdout().includes('tests QUEUED'); i++) await sleep(100);
    const id = /^plan ([0-9a-f-]{36})/.exec(run.stdout())?.[1];
    assert.ok(id, `not submitted: ${run.stdout()}`);
    await sleep(700); // subscribed
    return { run, id };
  }

  it('Ctrl-C (SIGINT) while waiting: the plan is cancelled, one line, exit 2', async () => {
    const { run, id } = await waiting('interrupted');
    run.kill('SIGINT');
    const r = await run.done;
    assert.equal(r.stderr, `interrupted by SIGINT: plan ${id} cancelled (now CANCELLED)\n`);
    assert.equal(r.code, 2);
    assert.equal(await planStatus(id), 'CANCELLED');
    assertNoToken(r);
  });

  it('SIGTERM with --no-cancel: the plan is left running, exit 2', async () => {
    const { run, id } = await waiting('left', ['--no-cancel']);
    run.kill('SIGTERM');
    const r = await run.done;
    assert.equal(r.stderr, `interrupted by SIGTERM: plan ${id} left running (--no-cancel)\n`);
    assert.equal(r.code, 2);
    assert.equal(await planStatus(id), 'QUEUED');
  });

  it('--timeout for the whole plan: reached while waiting, the plan is cancelled, one line, exit 2', async () => {
    const { run, id } = await waiting('too-slow', ['--timeout', '3']);
    const r = await run.done;
    assert.equal(r.stderr, `the plan did not end within the --timeout of 3 s: plan ${id} cancelled (now CANCELLED)\n`);
    assert.equal(r.code, 2);
    assert.equal(await planStatus(id), 'CANCELLED');
    const kept = await waiting('too-slow-kept', ['--timeout', '3', '--no-cancel']);
    const k = await kept.run.done;
    assert.equal(k.stderr, `the plan did not end within the --timeout of 3 s: plan ${kept.id} left running (--no-cancel)\n`);
    assert.equal(await planStatus(kept.id), 'QUEUED');
  });

  it('the WebSocket lost while waiting: one line, exit 2', async () => {
    // a TCP proxy in front of the API that can cut the WebSocket connections and leave HTTP alone
    const upgraded = new Set<Socket>();
    const proxy = createNetServer((client) => {
      const upstream = createConnection({ host: '127.0.0.1', port: server.api.port });
      client.once('data', (first: Buffer) => {
        if (/^upgrade: websocket/im.test(first.toString('latin1'))) upgraded.add(client);
      });
      client.pipe(upstream).pipe(client);
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
    });
    const port = await listen(proxy);
    try {
      const run = startCli(['submit', plan('wait.json', JSON.stringify({ name: 'waits', tests: [{ name: 'a', type: 'UNIT', script: 'true' }] })), '--url', `http://127.0.0.1:${port}`, '--wait']);
      // accepted, subscribed (the WebSocket is open and has carried its subscriptions), then cut
      for (let i = 0; i < 600 && !(run.stdout().includes('tests QUEUED') && upgraded.size > 0); i++) await sleep(100);
      assert.ok(upgraded.size > 0, 'the CLI opened no WebSocket');
      await sleep(1_000);
      for (const s of upgraded) s.destroy();
      const r = await run.done;
      assert.match(r.stdout, /^plan [0-9a-f-]{36} "waits": 1 tests QUEUED\n$/);
      assert.equal(r.stderr, `lost the connection to ws://127.0.0.1:${port}/graphql while waiting: the connection was cut (code 1006)\n`);
      assert.equal(r.code, 2);
    } finally {
      proxy.close();
    }
  });
});

describe('submit --bundle: a project directory run by its own tests, end to end', () => {
  let redis: TestRedis;
  let server: TestServer;
  let project: string;
  before(async () => {
    redis = await startTestRedis();
    const pools = JSON.stringify([{ name: 'container', kind: 'CONTAINER', cpus: 1, memoryMb: 256, image: 'debian-bookworm', capacity: 2, pids: 64, testTypes: ['UNIT'] }]);
    server = await startTestServer({ redisUrl: redis.url, worker: true, env: { POOLS: pools } });
    // a small project as a checkout holds it: sources, its own test runner, fixtures, a link
    project = join(dir, 'project');
    mkdirSync(join(project, 'src'), { recursive: true });
    mkdirSync(join(project, 'test/fixtures'), { recursive: true });
    writeFileSync(join(project, 'src/greet.sh'), 'greet() { echo "hello, $1"; }\n');
    writeFileSync(join(project, 'test/run.sh'), '#!/bin/sh\nset -e\n. src/greet.sh\nfor f in test/fixtures/*.txt; do\n  [ "$(greet "$(cat "$f")")" = "hello, $(cat "$f")" ] && echo "ok $f"\ndone\n[ -z "$1" ] || { greet "$1" | grep -q "^hello, $1$" && echo "ok $1"; }\n');
    chmodSync(join(project, 'test/run.sh'), 0o755);
    writeFileSync(join(project, 'test/fixtures/a.txt'), 'world');
    writeFileSync(join(project, 'test/fixtures/b.txt'), 'bundle');
    symlinkSync('test/run.sh', join(project, 'check'));
  });
  after(async () => {
    await server?.stop();
    await redis?.stop();
  });

  const PLAN = [
    'name: project',
    'tests:',
    '  - { name: fixtures, type: UNIT, script: ./test/run.sh }',
    '  - { name: argument, type: UNIT, script: ./check orchestrator }',
    '  - { name: fails, type: UNIT, script: "./test/run.sh; test -f not-in-the-bundle" }',
  ].join('\n');

  it('--bundle DIR packs and uploads it, then every test runs the project\'s own script; exit 1 for the test that fails', async () => {
    const file = plan('project.yaml', `${PLAN}\n`);
    const r = await cli('submit', file, '--url', server.url, '--bundle', project, '--wait', '--junit', join(dir, 'project.xml'));
    assert.equal(r.stderr, '');
    const lines = r.stdout.split('\n');
    assert.match(lines[0], new RegExp(`^bundle sha256:[0-9a-f]{12}… 5 files, \\d+ bytes, from ${project.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`));
    assert.match(lines[1], /^plan [0-9a-f-]{36} "project": 3 tests QUEUED$/);
    assert.ok(lines.some((l) => /^ {2}PASSED {4}fixtures \(\d+ ms\)$/.test(l)), r.stdout);
    assert.ok(lines.some((l) => /^ {2}PASSED {4}argument \(\d+ ms\)$/.test(l)), r.stdout);
    assert.ok(lines.some((l) => /^ {2}FAILED {4}fails \(\d+ ms\): exit code 1$/.test(l)), r.stdout);
    assert.match(r.stdout, /\nplan FAILED: 2 passed, 1 failed, 0 errors, 0 cancelled\n/);
    assert.equal(r.code, 1);
    const xml = readFileSync(join(dir, 'project.xml'), 'utf8');
    assert.match(xml, /ok test\/fixtures\/a\.txt\nok test\/fixtures\/b\.txt\n/);
    assert.match(xml, /ok orchestrator/);
  });

  it('the plan file names the bundle (a directory beside it, or an archive); the same files give the same bundle', async () => {
    const sub = join(dir, 'ci');
    mkdirSync(sub, { recursive: true });
    const passing = PLAN.split('\n').slice(0, 4).join('\n');
    const file = join(sub, 'plan.yaml');
    writeFileSync(file, `bundle: ../project\n${passing}\n`);
    const fromDir = await cli('submit', file, '--url', server.url, '--wait');
    assert.equal(fromDir.code, 0, fromDir.stdout + fromDir.stderr);
    assert.match(fromDir.stdout, /^bundle sha256:[0-9a-f]{12}… 5 files/);
    assert.match(fromDir.stdout, /\nplan PASSED: 2 passed, 0 failed, 0 errors, 0 cancelled\n/);
    const again = await cli('submit', file, '--url', server.url);
    assert.equal(again.stdout.split('\n')[0], fromDir.stdout.split('\n')[0], 'packed twice, the same id');

    const archive = join(dir, 'project.tar.gz');
    execFileSync('tar', ['-C', project, '-czf', archive, '.']);
    writeFileSync(file, `bundle: ../project.tar.gz\n${passing}\n`);
    const fromArchive = await cli('submit', file, '--url', server.url, '--wait');
    assert.equal(fromArchive.code, 0, fromArchive.stdout + fromArchive.stderr);
    const id = /^bundle (sha256:[0-9a-f]{12})…/.exec(fromArchive.stdout)?.[1];
    assert.equal(id, `sha256:${createHash('sha256').update(readFileSync(archive)).digest('hex').slice(0, 12)}`, 'an archive is sent as it is');
  });

  it('plain lines per status change, each failure\'s message and stderr tail, a JUnit report junit2json reads', async () => {
    // two sleep and fill the pool's 2 places, so the third starts once the CLI follows the plan (a test
    // that started before the subscriptions were in place has no RUNNING line)
    const noisy = 'sleep 1; for i in $(seq 1 30); do echo "line $i" >&2; done; printf "esc \\033[2J\\n" >&2; exit 3';
    const file = plan('noisy.json', JSON.stringify({ name: 'noisy', tests: [{ name: 'quiet', type: 'UNIT', script: 'sleep 1; echo fine' }, { name: 'noisy', type: 'UNIT', script: noisy }, { name: 'late', type: 'UNIT', script: 'true' }] }));
    const report = join(dir, 'noisy.xml');
    const r = await startCli(['submit', file, '--url', server.url, '--wait', '--junit', report], { ORCHESTRATOR_TOKEN: TOKEN }).done;
    assert.equal(r.stderr, '');
    assert.equal(r.code, 1);
    assertNoToken(r);
    const lines = r.stdout.split('\n');
    const at = (re: RegExp) => lines.findIndex((l) => re.test(l));
    assert.ok(at(/^ {2}PASSED {4}quiet \(\d+ ms\)$/) > 0, r.stdout);
    assert.ok(at(/^ {2}PASSED {4}late \(\d+ ms\)$/) > at(/^ {2}RUNNING {3}late$/), r.stdout);
    assert.ok(at(/^ {2}RUNNING {3}late$/) > 0, r.stdout);
    const failedLine = at(/^ {2}FAILED {4}noisy \(\d+ ms\): exit code 3\b/);
    assert.ok(failedLine > 0, r.stdout);
    // the details at the end: the message, then the last 20 of 31 stderr lines, control characters visible
    const details = at(/^FAILED noisy: exit code 3\b/);
    assert.ok(details > failedLine, r.stdout);
    assert.deepEqual(lines.slice(details + 1, details + 23), ['  stderr, last 20 of 31 lines:', ...Array.from({ length: 19 }, (_, i) => `  | line ${i + 12}`), '  | esc \\u001b[2J', 'plan FAILED: 2 passed, 1 failed, 0 errors, 0 cancelled']);
    assert.ok(!r.stdout.includes('\u001b'), 'an escape sequence of a test reached the terminal');

    const { parse } = await import('junit2json');
    const xml = (await parse(readFileSync(report, 'utf8'))) as any;
    const suite = xml.testsuite[0];
    assert.deepEqual([suite.name, suite.tests, suite.failures, suite.errors, suite.skipped], ['noisy', 3, 1, 0, 0]);
    const cases = Object.fromEntries(suite.testcase.map((c: any) => [c.name, c]));
    assert.deepEqual(cases.quiet['system-out'], ['fine\n']);
    assert.equal(cases.quiet.failure, undefined);
    assert.equal(cases.noisy.failure.length, 1);
    assert.match(cases.noisy.failure[0].message, /^exit code 3\b/);
    assert.equal(cases.noisy.failure[0].type, 'FAILED');
    assert.match(cases.noisy['system-err'][0], /^line 1\nline 2\n[^]*line 30\nesc \\u001b\[2J\n$/);
    assert.ok(cases.noisy.time > 0 && cases.quiet.time > 0);
  });

  it('on a terminal: one progress line rewritten in place, no RUNNING lines', async () => {
    const file = plan('tty.json', JSON.stringify({ name: 'tty', tests: [{ name: 'a', type: 'UNIT', script: 'sleep 1.5' }] }));
    const command = [process.execPath, MAIN_JS, 'submit', file, '--url', server.url, '--wait'].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    // script(1) gives the CLI a pseudo-terminal as its stdout
    const child = spawn('script', ['-q', '-e', '-c', command, '/dev/null'], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: tmpdir(), COLUMNS: '100' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0, out);
    assert.match(out, /\r\u001b\[K1 (queued|running) of 1 · \ds/, JSON.stringify(out));
    assert.ok(!/RUNNING {3}a/.test(out), JSON.stringify(out));
    assert.match(out, /plan PASSED: 1 passed, 0 failed, 0 errors, 0 cancelled/);
  });

  it('a missing bundle, one that cannot be packed, and a hostile archive: one line, exit 2, no plan', async () => {
    const file = plan('p.yaml', `${PLAN}\n`);
    const plans = await server.core.db.prisma.executionPlan.count();
    expectOneErrorLine(await cli('submit', file, '--url', server.url, '--bundle', join(dir, 'nowhere')), `--bundle ${join(dir, 'nowhere')}: no such file or directory`);
    const withFifo = join(dir, 'with-fifo');
    mkdirSync(withFifo);
    execFileSync('mkfifo', [join(withFifo, 'pipe')]);
    expectOneErrorLine(await cli('submit', file, '--url', server.url, '--bundle', withFifo), `cannot pack the directory ${withFifo}: ${join(withFifo, 'pipe')} is a FIFO: a bundle holds files, directories and links only`);
    const evil = join(dir, 'evil.tar');
    writeFileSync(evil, tarOf([symlink('up', '../../etc')]));
    expectOneErrorLine(await cli('submit', file, '--url', server.url, '--bundle', evil), `the archive ${evil} was refused as a bundle: entry "up": a symbolic link to "../../etc" that leaves the bundle`);
    const bad = plan('bad-bundle.yaml', `bundle: ./missing-dir\n${PLAN}\n`);
    expectOneErrorLine(await cli('submit', bad, '--url', server.url), `${bad}: bundle ./missing-dir: no such file or directory`);
    assert.equal(await server.core.db.prisma.executionPlan.count(), plans);
  });
});
