// Configuration parsing, src/config/config.ts: defaults, and every problem listed at once.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig, resolveSandboxUser } from '../../src/config/config';
import { DEFAULT_POOLS } from '../../src/config/pools';

/** The problems of a configuration that must be refused. */
function problemsOf(env: NodeJS.ProcessEnv): string[] {
  try {
    loadConfig(env);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `a ConfigError, got ${String(e)}`);
    assert.equal(e.name, 'ConfigError');
    for (const p of e.problems) assert.ok(e.message.includes(p), `the message lists "${p}"`);
    return e.problems;
  }
  assert.fail(`accepted ${JSON.stringify(env)}`);
}

const pool = (p: Record<string, unknown> = {}) => ({ name: 'a', kind: 'CONTAINER', cpus: 1, memoryMb: 256, image: 'debian-bookworm', capacity: 1, testTypes: ['UNIT'], ...p });

describe('loadConfig defaults', () => {
  it('gives a working configuration from an empty environment', () => {
    const c = loadConfig({});
    assert.equal(c.port, 4000);
    assert.equal(c.host, '127.0.0.1');
    assert.equal(c.dataDir, resolve('./data'));
    // root's home is closed to the sandbox user: root keeps images in /var/cache
    const cache = process.getuid?.() === 0 ? '/var/cache' : join(homedir(), '.cache');
    assert.equal(c.imageDir, join(cache, 'test-orchestrator', 'images'));
    assert.equal(c.databaseUrl, undefined);
    assert.equal(c.redisUrl, undefined);
    assert.equal(c.redisPrefix, 'orch');
    assert.deepEqual(c.pools, DEFAULT_POOLS);
    assert.equal(c.logLevel, 'info');
    assert.equal(c.maxOutputBytes, 1024 * 1024);
    assert.equal(c.maxRequestBytes, 256 * 1024 * 1024);
    assert.equal(c.workerHeartbeatMs, 5_000);
    assert.equal(c.reconcileIntervalMs, 5_000);
    assert.deepEqual(c.limits, {
      maxTestsPerPlan: 50_000,
      maxScriptBytes: 256 * 1024,
      maxTimeoutSeconds: 86_400,
      defaultTimeoutSeconds: 600,
      defaultMaxRetries: 2,
      maxRetries: 10,
      maxEnvVars: 200,
      maxEnvValueBytes: 32 * 1024,
      maxServices: 16,
      maxArtifactPaths: 100,
      minPriority: -1000,
      maxPriority: 1000,
      maxFiles: 1000,
      maxFileBytes: 1024 * 1024,
      maxFilesBytes: 8 * 1024 * 1024,
    });
    assert.equal(c.bundleDir, resolve('./data/bundles'));
    assert.deepEqual(c.bundleLimits, { maxArchiveBytes: 256 * 1024 * 1024, maxUnpackedBytes: 512 * 1024 * 1024, maxEntries: 100_000 });
  });

  it('reads every variable it knows, numbers from text', () => {
    const c = loadConfig({
      PORT: '0',
      HOST: '0.0.0.0',
      DATA_DIR: '/tmp/orch-x',
      IMAGE_DIR: '/tmp/images',
      DATABASE_URL: 'postgresql://u:p@db:5432/orch',
      REDIS_URL: 'redis://cache:6379',
      REDIS_PREFIX: 'ci-1',
      LOG_LEVEL: 'warn',
      MAX_OUTPUT_BYTES: '4096',
      MAX_TESTS_PER_PLAN: '10',
      DEFAULT_TIMEOUT_SECONDS: '86400',
      MAX_REQUEST_BYTES: '1000',
      WORKER_HEARTBEAT_MS: '100',
      RECONCILE_INTERVAL_MS: '200',
      BUNDLE_DIR: '/srv/shared/bundles',
      MAX_BUNDLE_BYTES: '1000',
      MAX_BUNDLE_UNPACKED_BYTES: '2000',
      MAX_BUNDLE_FILES: '30',
    });
    assert.equal(c.bundleDir, '/srv/shared/bundles');
    assert.deepEqual(c.bundleLimits, { maxArchiveBytes: 1000, maxUnpackedBytes: 2000, maxEntries: 30 });
    assert.equal(c.port, 0);
    assert.equal(c.host, '0.0.0.0');
    assert.equal(c.dataDir, '/tmp/orch-x');
    assert.equal(c.imageDir, '/tmp/images');
    assert.equal(c.databaseUrl, 'postgresql://u:p@db:5432/orch');
    assert.equal(c.redisUrl, 'redis://cache:6379');
    assert.equal(c.redisPrefix, 'ci-1');
    assert.equal(c.logLevel, 'warn');
    assert.equal(c.maxOutputBytes, 4096);
    assert.equal(c.limits.maxTestsPerPlan, 10);
    assert.equal(c.limits.defaultTimeoutSeconds, 86_400);
    assert.equal(c.maxRequestBytes, 1000);
    assert.equal(c.workerHeartbeatMs, 100);
    assert.equal(c.reconcileIntervalMs, 200);
  });

  it('puts the image cache under XDG_CACHE_HOME when set', () => {
    assert.equal(loadConfig({ XDG_CACHE_HOME: '/tmp/xdg' }).imageDir, '/tmp/xdg/test-orchestrator/images');
  });

  it('accepts the other URL schemes', () => {
    assert.equal(loadConfig({ DATABASE_URL: 'postgres://h/db' }).databaseUrl, 'postgres://h/db');
    assert.equal(loadConfig({ REDIS_URL: 'rediss://h:6380' }).redisUrl, 'rediss://h:6380');
    assert.equal(loadConfig({ REDIS_URL: 'unix:///run/redis.sock' }).redisUrl, 'unix:///run/redis.sock');
  });

  it('ignores variables it does not know', () => {
    assert.equal(loadConfig({ PATH: '/bin', SOMETHING_ELSE: 'x' }).port, 4000);
  });
});

describe('loadConfig errors', () => {
  it('lists every bad variable at once, each by name', () => {
    const problems = problemsOf({
      PORT: '70000',
      HOST: '',
      DATABASE_URL: 'mysql://db/x',
      REDIS_URL: 'http://cache',
      REDIS_PREFIX: 'has space',
      LOG_LEVEL: 'loud',
      MAX_OUTPUT_BYTES: '0',
      MAX_TESTS_PER_PLAN: 'many',
      DEFAULT_TIMEOUT_SECONDS: '86401',
      WORKER_HEARTBEAT_MS: '-5',
      RECONCILE_INTERVAL_MS: '1.5',
    });
    const named = problems.map((p) => p.split(':')[0]).sort();
    assert.deepEqual(named, [
      'DATABASE_URL',
      'DEFAULT_TIMEOUT_SECONDS',
      'HOST',
      'LOG_LEVEL',
      'MAX_OUTPUT_BYTES',
      'MAX_TESTS_PER_PLAN',
      'PORT',
      'RECONCILE_INTERVAL_MS',
      'REDIS_PREFIX',
      'REDIS_URL',
      'WORKER_HEARTBEAT_MS',
    ]);
    assert.ok(problems.some((p) => /^DATABASE_URL: a postgresql:\/\/ URL/.test(p)), problems.join('\n'));
    assert.ok(problems.some((p) => /^REDIS_URL: a redis:\/\/, rediss:\/\/ or unix:\/\/ URL/.test(p)), problems.join('\n'));
  });

  // `PORT=` (an empty line in an env file) means unset, as in most tools: the default, never port 0.
  it('reads an empty numeric variable as unset', () => {
    const c = loadConfig({ PORT: '', MAX_OUTPUT_BYTES: '' });
    assert.equal(c.port, 4000);
    assert.equal(c.maxOutputBytes, 1024 * 1024);
  });

  it('lists bad variables and bad pools together', () => {
    const problems = problemsOf({ PORT: 'x', POOLS: JSON.stringify([pool({ cpus: 0 })]) });
    assert.equal(problems.length, 2, problems.join('\n'));
    assert.match(problems[0], /^PORT: /);
    assert.match(problems[1], /^POOLS pools\.0\.cpus: /);
  });

  it('lists bad variables and POOLS that is not JSON together', () => {
    const problems = problemsOf({ LOG_LEVEL: 'x', POOLS: '[{' });
    assert.equal(problems.length, 2, problems.join('\n'));
    assert.match(problems[0], /^LOG_LEVEL: /);
    assert.match(problems[1], /^POOLS: not valid JSON: /);
  });
});

describe('loadConfig pools', () => {
  it('takes pools from POOLS, with defaults for arch, tags, pids, disk and images (every image)', () => {
    const c = loadConfig({ POOLS: JSON.stringify([pool()]) });
    assert.deepEqual(c.pools, [{ ...pool(), arch: 'x86_64', tags: [], pids: 512, diskMb: 2048, images: ['*'] }]);
  });

  it('treats a blank POOLS as unset', () => {
    assert.deepEqual(loadConfig({ POOLS: '  ' }).pools, DEFAULT_POOLS);
  });

  it('names the path of every bad field of every pool', () => {
    const problems = problemsOf({
      POOLS: JSON.stringify([
        pool({ name: 'Bad Name', kind: 'VM' }),
        pool({ name: 'b', memoryMb: 1, testTypes: [] }),
        pool({ name: 'c', image: '../etc', capacity: 0, testTypes: ['UNIT', 'FUZZ'], tags: [''] }),
      ]),
    });
    const paths = problems.map((p) => p.split(':')[0]).sort();
    assert.deepEqual(paths, [
      'POOLS pools.0.kind',
      'POOLS pools.0.name',
      'POOLS pools.1.memoryMb',
      'POOLS pools.1.testTypes',
      'POOLS pools.2.capacity',
      'POOLS pools.2.image',
      'POOLS pools.2.tags.0',
      'POOLS pools.2.testTypes.1',
    ]);
    assert.ok(problems.some((p) => p.startsWith('POOLS pools.0.name: lower-case letters')), problems.join('\n'));
  });

  it('names a missing field', () => {
    const { cpus: _cpus, ...noCpus } = pool();
    const problems = problemsOf({ POOLS: JSON.stringify([noCpus]) });
    assert.equal(problems.length, 1, problems.join('\n'));
    assert.match(problems[0], /^POOLS pools\.0\.cpus: /);
  });

  it('refuses an empty list and a value that is not a list', () => {
    assert.deepEqual(problemsOf({ POOLS: '[]' }), ['POOLS pools: at least one pool']);
    const notList = problemsOf({ POOLS: '{"name":"a"}' });
    assert.equal(notList.length, 1);
    assert.match(notList[0], /^POOLS pools: /);
  });

  it('refuses duplicate pool names, naming the later one', () => {
    const problems = problemsOf({ POOLS: JSON.stringify([pool({ name: 'a' }), pool({ name: 'b' }), pool({ name: 'a', cpus: 2 })]) });
    assert.deepEqual(problems, ['POOLS pools.2.name: duplicate pool name "a"']);
  });

  it('reads POOLS_FILE, and POOLS wins over it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'orch-config-'));
    try {
      const file = join(dir, 'pools.json');
      writeFileSync(file, JSON.stringify([pool({ name: 'from-file' })]));
      assert.deepEqual(loadConfig({ POOLS_FILE: file }).pools.map((p) => p.name), ['from-file']);
      assert.deepEqual(loadConfig({ POOLS_FILE: file, POOLS: JSON.stringify([pool({ name: 'from-env' })]) }).pools.map((p) => p.name), ['from-env']);

      writeFileSync(file, JSON.stringify([pool({ name: 'x', cpus: 'two' })]));
      const problems = problemsOf({ POOLS_FILE: file });
      assert.equal(problems.length, 1);
      assert.ok(problems[0].startsWith(`POOLS_FILE (${file}) pools.0.cpus: `), problems[0]);

      writeFileSync(file, 'not json');
      assert.match(problemsOf({ POOLS_FILE: file })[0], /^POOLS_FILE \(.*pools\.json\): not valid JSON/);
      assert.match(problemsOf({ POOLS_FILE: join(dir, 'missing.json') })[0], /^POOLS_FILE: cannot read .*missing\.json/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('SANDBOX_USER', () => {
  const passwd = (lines: string[]) => {
    const dir = mkdtempSync(join(tmpdir(), 'orch-passwd-'));
    const file = join(dir, 'passwd');
    writeFileSync(file, `${lines.join('\n')}\n`);
    return { file, done: () => rmSync(dir, { recursive: true, force: true }) };
  };

  it('defaults to orch-sandbox when it exists, else nobody', () => {
    const withUser = passwd(['root:x:0:0::/root:/bin/sh', 'orch-sandbox:x:998:997::/nonexistent:/usr/sbin/nologin']);
    const without = passwd(['root:x:0:0::/root:/bin/sh']);
    try {
      assert.deepEqual(resolveSandboxUser(undefined, withUser.file), { uid: 998, gid: 997, name: 'orch-sandbox' });
      assert.deepEqual(resolveSandboxUser(undefined, without.file), { uid: 65534, gid: 65534, name: 'nobody' });
    } finally {
      withUser.done();
      without.done();
    }
  });

  it('takes a name or uid[:gid], and never root', () => {
    const p = passwd(['root:x:0:0::/root:/bin/sh', 'runner:x:1234:1235::/home/runner:/bin/sh']);
    try {
      assert.deepEqual(resolveSandboxUser('runner', p.file), { uid: 1234, gid: 1235, name: 'runner' });
      assert.deepEqual(resolveSandboxUser('2000:3000', p.file), { uid: 2000, gid: 3000, name: '2000:3000' });
      assert.throws(() => resolveSandboxUser('ghost', p.file), /SANDBOX_USER: no user "ghost"/);
      assert.throws(() => resolveSandboxUser('root', p.file), /never run as root/);
      assert.throws(() => resolveSandboxUser('0', p.file), /never run as root/);
    } finally {
      p.done();
    }
  });

  it('is validated with the rest of the configuration', () => {
    assert.throws(() => loadConfig({ SANDBOX_USER: 'Bad Name!' }), /SANDBOX_USER: a user name, or uid\[:gid\]/);
  });
});
