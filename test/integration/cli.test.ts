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
}

function startCli(args: string[]): Cli {
  const child = spawn(process.execPath, [MAIN_JS, ...args], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: tmpdir() }, stdio: ['ignore', 'pipe', 'pipe'] });
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
  return { done, stdout: () => stdout };
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
    // the same with --wait, and with the default URL's form given with /graphql and a trailing slash
    expectOneErrorLine(await cli('submit', plan('good.json', GOOD), '--wait', `--url=http://127.0.0.1:${port}/graphql/`), `cannot reach http://127.0.0.1:${port}: connection refused`);
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
      expectOneErrorLine(await cli('submit', file, '--url', `${base}/forbidden`), 'HTTP 403: forbidden');
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
    submit: ['PLAN_FILE', '--url URL', '--wait', '--junit FILE', '--timeout SECONDS', '--bundle DIR|ARCHIVE', '--help'],
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
    expectOneErrorLine(await cli('submit', file, '--url', server.url, '--wait'), 'UNSCHEDULABLE: tests[0] "huge": no pool can run it (pool "container" has 1 CPUs, fewer than 64; pool "integration" does not run UNIT tests; pool "perf" does not run UNIT tests)');
  });

  it('BAD_USER_INPUT from the server (a limit only it knows): one line, exit 2', async () => {
    const tests = ['a', 'b', 'c'].map((name) => ({ name, type: 'UNIT', script: 'true' }));
    expectOneErrorLine(await cli('submit', plan('three.json', JSON.stringify({ name: 'three', tests })), '--url', server.url), 'BAD_USER_INPUT: invalid plan: tests holds 3 tests, more than the limit of 2');
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
