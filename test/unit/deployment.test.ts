// The deployment files, checked without Docker (it cannot run on every machine): docker-compose.yml
// parses and names only variables the program reads, with tokens on; the Dockerfile installs what the
// project says it needs; the README's CI examples parse and use only options `submit` has.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { CONFIG_VARIABLES } from '../../src/config/config';
import { SUBMIT } from '../../src/cli/usage';

const ROOT = join(__dirname, '..', '..', '..');
const read = (f: string) => readFileSync(join(ROOT, f), 'utf8');
/** Variables of issue 11's server side (src/config/auth.ts on its branch); accepted until it is merged. */
const ARRIVING = new Set(CONFIG_VARIABLES.includes('AUTH') ? [] : ['AUTH']);

type Service = {
  image?: string;
  build?: unknown;
  command?: string[];
  entrypoint?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  profiles?: string[];
  privileged?: boolean;
  cap_drop?: string[];
  depends_on?: Record<string, unknown>;
};

describe('docker-compose.yml', () => {
  const compose = parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, Service>; volumes: Record<string, unknown> };
  const s = compose.services;

  it('runs PostgreSQL, Redis (append-only, no eviction), the API and a worker, and a one-shot token service', () => {
    assert.deepEqual(Object.keys(s).sort(), ['api', 'postgres', 'redis', 'token', 'worker']);
    const redis = s.redis.command!.join(' ');
    assert.match(redis, /--appendonly yes/);
    assert.match(redis, /--maxmemory-policy noeviction/);
    assert.deepEqual(s.api.command, ['serve']);
    assert.deepEqual(s.worker.command, ['worker']);
    assert.deepEqual(s.token.entrypoint, ['orchestrator', 'token']);
    assert.deepEqual(s.token.profiles, ['setup'], 'the token service must not start with `up`');
    for (const name of ['api', 'worker', 'token']) {
      assert.equal(s[name].build, '.', `${name} is built from the Dockerfile`);
      assert.ok(s[name].depends_on?.postgres && s[name].depends_on?.redis, `${name} waits for the servers`);
    }
    assert.deepEqual(s.api.cap_drop, ['ALL']);
    assert.equal(s.worker.privileged, true);
  });

  it('names only variables the program reads, with AUTH=on, and URLs that match the servers', () => {
    for (const name of ['api', 'worker', 'token']) {
      const env = s[name].environment!;
      for (const v of Object.keys(env)) assert.ok(CONFIG_VARIABLES.includes(v) || ARRIVING.has(v), `${name}: ${v} is not a configuration variable (src/config)`);
      assert.equal(env.AUTH, 'on', `${name}: AUTH`);
      const db = new URL(env.DATABASE_URL);
      const pg = s.postgres.environment!;
      assert.deepEqual([db.hostname, db.port, db.username, db.password, db.pathname], ['postgres', '5432', pg.POSTGRES_USER, pg.POSTGRES_PASSWORD, `/${pg.POSTGRES_DB}`]);
      assert.equal(new URL(env.REDIS_URL).hostname, 'redis');
    }
    assert.equal(s.api.environment!.HOST, '0.0.0.0');
    // what workers store the API serves, and the other way round: one volume at the same path
    for (const v of ['ARTIFACT_DIR', 'BUNDLE_DIR']) {
      assert.equal(s.api.environment![v], s.worker.environment![v]);
      assert.ok(s.api.environment![v].startsWith('/stores/'));
    }
    assert.ok(s.api.volumes!.includes('stores:/stores') && s.worker.volumes!.includes('stores:/stores'));
  });

  it('every named volume is declared', () => {
    for (const [name, svc] of Object.entries(s)) {
      for (const v of svc.volumes ?? []) {
        const source = v.split(':')[0];
        if (!source.startsWith('.') && !source.startsWith('/')) assert.ok(source in compose.volumes, `${name}: volume ${source} is not declared`);
      }
    }
  });
});

describe('Dockerfile', () => {
  const docker = read('Dockerfile');
  it('node:20 on bookworm, the Debian packages of scripts/debian-packages.txt, npm ci, the build, orchestrator as entry point', () => {
    assert.match(docker, /^FROM node:20-bookworm$/m);
    assert.match(docker, /COPY scripts\/debian-packages\.txt/);
    assert.match(docker, /xargs apt-get install -y/);
    assert.match(docker, /RUN npm ci\b/);
    assert.match(docker, /npm run build/);
    assert.match(docker, /^ENTRYPOINT \["orchestrator"\]$/m);
    assert.match(docker, /useradd [^\n]*orch-sandbox/);
    // what the image copies is not a host's build or dependencies
    const ignore = read('.dockerignore').split('\n');
    for (const p of ['node_modules', 'dist', '.git', 'data']) assert.ok(ignore.includes(p), `.dockerignore: ${p}`);
  });
});

describe('README "Use it from CI"', () => {
  const readme = read('README.md');
  const section = readme.slice(readme.indexOf('## Use it from CI'), readme.indexOf('\n## ', readme.indexOf('## Use it from CI') + 5));
  const blocks = [...section.matchAll(/```yaml\n([^]*?)```/g)].map((m) => parse(m[1]));
  const options = new Set(SUBMIT.options.map((o) => `--${o.name}`));

  const submits = (text: string) => [...text.matchAll(/orchestrator submit ([^\n]*)/g)].map((m) => m[1].split(/\s+/));

  it('a GitHub Actions and a GitLab CI example that parse, submit with ORCHESTRATOR_TOKEN and publish the report', () => {
    assert.equal(blocks.length, 2);
    const [github, gitlab] = blocks as any[];
    const steps = github.jobs.orchestrator.steps as any[];
    const run = steps.find((st) => typeof st.run === 'string' && st.run.includes('orchestrator submit'));
    assert.equal(run.env.ORCHESTRATOR_TOKEN, '${{ secrets.ORCHESTRATOR_TOKEN }}');
    const report = steps.find((st) => st.uses?.startsWith('mikepenz/action-junit-report'));
    assert.equal(report.with.report_paths, 'report.xml');
    assert.match(report.if, /!cancelled\(\)/);
    const job = gitlab['orchestrator-tests'];
    assert.deepEqual(job.artifacts.reports, { junit: 'report.xml' });
    assert.equal(job.artifacts.when, 'always');
    assert.deepEqual(job.image.entrypoint, ['']);
    for (const args of [...submits(run.run), ...submits(job.script.join('\n'))]) {
      assert.ok(args.includes('--wait') && args[args.indexOf('--junit') + 1] === 'report.xml', args.join(' '));
      assert.ok(!args.includes('--token'), 'the token comes from the environment, not the command line');
    }
  });

  it('uses only options submit has', () => {
    const used = submits(section).flat().filter((a) => a.startsWith('--'));
    assert.ok(used.length > 0);
    for (const o of used) assert.ok(options.has(o), `submit has no option ${o}`);
  });
});
