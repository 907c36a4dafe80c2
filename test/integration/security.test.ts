// SECURITY tests through the API: the hardened profile holds and the result carries a security audit
// (what the script was denied and what it executed) as a LOG artifact, downloadable like any other.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestRedis, type TestRedis } from '../helpers/redis';
import { submitTests, testsByName, waitForPlan } from '../helpers/plans';
import { startTestServer, type TestServer } from '../helpers/server';

const PLAN = `query($id: ID!) { plan(id: $id) { status counts { running queued }
  tests(first: 10) { nodes { name status result { exitCode stdout stderr artifacts { name kind sizeBytes url } } } } } }`;
const POOLS = JSON.stringify([
  { name: 'secure', kind: 'CONTAINER', cpus: 1, memoryMb: 256, image: 'debian-bookworm', capacity: 1, pids: 64, testTypes: ['UNIT', 'SECURITY'] },
]);

describe('SECURITY tests', { skip: process.getuid?.() !== 0 ? 'the security audit needs root' : false }, () => {
  let redis: TestRedis;
  let server: TestServer;

  before(async () => {
    redis = await startTestRedis();
    server = await startTestServer({ redisUrl: redis.url, worker: true, env: { POOLS } });
  });
  after(async () => {
    await server?.stop();
    await redis?.stop();
  });

  async function runPlan(tests: object[]) {
    const id = await submitTests(server.url, tests, {}, 'security');
    return testsByName(await waitForPlan(server.url, PLAN, id, { timeoutMs: 60_000 }));
  }

  it('a SECURITY test that tries a user namespace and ptrace gets EPERM, and its security-audit.log lists both and what it ran', async () => {
    const t = await runPlan([
      {
        name: 'probes',
        type: 'SECURITY',
        script: [
          'if unshare -U true 2>/dev/null; then echo "user namespace: made"; else echo "user namespace: denied"; fi',
          `perl -e '$r = syscall(101, 16, 1, 0, 0); print "ptrace: ", ($r == -1 ? "$!" : "ok"), "\\n"'`,
          'if touch /tmp/x 2>/dev/null; then echo "/tmp: writable"; else echo "/tmp: read-only"; fi',
          'id -u; /bin/true',
        ].join('\n'),
      },
      { name: 'unit', type: 'UNIT', script: 'unshare -U true 2>/dev/null; echo plain' },
    ]);
    const probes = t.probes;
    assert.equal(probes.status, 'PASSED', JSON.stringify(probes.result));
    assert.equal(probes.result.stdout, 'user namespace: denied\nptrace: Operation not permitted\n/tmp: read-only\n65534\n');
    const audit = probes.result.artifacts.find((a: any) => a.name === 'security-audit.log');
    assert.ok(audit, `artifacts: ${JSON.stringify(probes.result.artifacts)}`);
    assert.equal(audit.kind, 'LOG');
    const res = await fetch(`${server.url}${audit.url}`);
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.equal(Buffer.byteLength(text), audit.sizeBytes);
    assert.match(text, /^ {2}unshare +1 {2}EPERM {2}\(\/usr\/bin\/unshare 1\)$/m, text);
    assert.match(text, /^ {2}ptrace +1 {2}EPERM {2}\(\/usr\/bin\/perl 1\)$/m, text);
    for (const program of ['/usr/bin/unshare', '/usr/bin/perl', '/usr/bin/id', '/bin/true']) {
      assert.match(text, new RegExp(`^ +1 {2}${program.replace(/\//g, '\\/')}$`, 'm'), `${program} executed:\n${text}`);
    }
    assert.doesNotMatch(text, /not monitored|did not confirm|may be low/, text);
    // A UNIT test has no audit, only its logs (and its unshare is denied by the baseline filter all the same).
    assert.equal(t.unit.status, 'PASSED');
    assert.deepEqual(t.unit.result.artifacts.map((a: any) => a.name).sort(), ['stderr.log', 'stdout.log']);
  });
});
