// The API's Host/Origin decisions, query cost and body recognition (src/api/guards) and their configuration.
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { describe, it } from 'node:test';
import { parse } from 'graphql';
import { ConfigError, loadConfig } from '../../src/config/config';
import { HostOriginGuard } from '../../src/api/guards/host-origin.guard';
import { isSubmitPlanOnly, peekQuery } from '../../src/api/guards/body-limit.middleware';
import { costError, parseLimited } from '../../src/api/guards/query-limits';
import { createSchema } from '../../src/api/schema';

const req = (headers: Record<string, string>) => ({ headers }) as unknown as IncomingMessage;

describe('API security configuration', () => {
  it('has safe defaults on loopback', () => {
    const c = loadConfig({}).apiSecurity;
    assert.deepEqual(c.allowedHosts, []);
    assert.equal(c.allowedOrigins, undefined, 'made from the allowed hosts');
    assert.equal(c.introspection, true, 'GraphiQL works on this machine');
    assert.deepEqual(c.query, { depth: 10, cost: 10_000, aliases: 30, tokens: 5_000 });
    assert.equal(c.maxBodyBytes, 1024 * 1024);
    assert.deepEqual(c.ws, { maxConnections: 500, maxConnectionsPerAddress: 100, maxSubscriptionsPerConnection: 20 });
  });

  it('turns introspection off when listening beyond loopback, unless INTROSPECTION=on', () => {
    assert.equal(loadConfig({ HOST: '0.0.0.0' }).apiSecurity.introspection, false);
    assert.equal(loadConfig({ HOST: '0.0.0.0', INTROSPECTION: 'on' }).apiSecurity.introspection, true);
    assert.equal(loadConfig({ HOST: '::1' }).apiSecurity.introspection, true);
    assert.equal(loadConfig({ INTROSPECTION: 'off' }).apiSecurity.introspection, false);
  });

  it('reads the lists, * switches a check off, HOST given as a name is allowed', () => {
    const c = loadConfig({ HOST: 'orch.internal', ALLOWED_HOSTS: 'CI.example.com, .corp.example', ALLOWED_ORIGINS: 'https://ci.example.com:8443/' }).apiSecurity;
    assert.deepEqual(c.allowedHosts, ['ci.example.com', '.corp.example', 'orch.internal']);
    assert.deepEqual(c.allowedOrigins, ['https://ci.example.com:8443']);
    const off = loadConfig({ ALLOWED_HOSTS: '*', ALLOWED_ORIGINS: '*' }).apiSecurity;
    assert.equal(off.allowedHosts, null);
    assert.equal(off.allowedOrigins, null);
  });

  it('lists every bad value at once', () => {
    try {
      loadConfig({ ALLOWED_HOSTS: 'a b', ALLOWED_ORIGINS: 'ftp://x', INTROSPECTION: 'yes', QUERY_DEPTH_LIMIT: '0', MAX_BODY_BYTES: '10' });
      assert.fail('accepted');
    } catch (e) {
      assert.ok(e instanceof ConfigError);
      const names = e.problems.map((p) => p.split(':')[0]).sort();
      assert.deepEqual(names, ['ALLOWED_HOSTS', 'ALLOWED_ORIGINS', 'INTROSPECTION', 'MAX_BODY_BYTES', 'QUERY_DEPTH_LIMIT']);
    }
  });
});

describe('HostOriginGuard', () => {
  const guard = new HostOriginGuard({ allowedHosts: ['orch.example.com', '.ci.example'] }, () => 4000);

  it('allows IP literals, localhost and the listed names, with any port; refuses other names', () => {
    for (const h of ['127.0.0.1', '127.0.0.1:4000', '[::1]:4000', '10.0.0.7:8080', 'LocalHost:1', 'localhost.', 'orch.example.com', 'Orch.Example.Com.:443', 'ci.example', 'a.b.ci.example']) {
      assert.equal(guard.hostAllowed(h), true, h);
    }
    for (const h of ['evil.example', 'orch.example.com.evil.example', 'xci.example', 'localhost.evil.example', 'evil.localhost', '::1', '[::1', 'a:b:c', '', 'orch.example.com:99999999']) {
      assert.equal(guard.hostAllowed(h), false, h);
    }
  });

  it('refuses a foreign Host and a foreign or null Origin; requests without Origin pass', () => {
    assert.equal(guard.refusal(req({ host: 'localhost:4000' })), null);
    assert.match(guard.refusal(req({ host: 'evil.example:4000' })) ?? '', /ALLOWED_HOSTS/);
    assert.match(guard.refusal(req({})) ?? '', /without a Host header/);
    for (const origin of ['http://evil.example', 'null', 'file://', 'http://localhost:4001', 'chrome-extension://abc', 'http://127.0.0.2:4000']) {
      assert.match(guard.refusal(req({ host: 'localhost:4000', origin })) ?? '', /ALLOWED_ORIGINS/, origin);
    }
    // the server's own pages: the Origin names the host and port the request was sent to
    for (const [host, origin] of [['localhost:4000', 'http://localhost:4000'], ['10.0.0.7:8080', 'http://10.0.0.7:8080'], ['orch.example.com', 'https://orch.example.com']]) {
      assert.equal(guard.refusal(req({ host, origin })), null, origin);
    }
    // made from the allowed names: default port or this server's, http or https (a proxy that rewrites Host)
    for (const origin of ['https://orch.example.com', 'http://orch.example.com:4000', 'http://localhost:4000', 'http://[::1]:4000']) {
      assert.equal(guard.refusal(req({ host: '127.0.0.1:4000', origin })), null, origin);
    }
    assert.match(guard.refusal(req({ host: '127.0.0.1:4000', origin: 'https://orch.example.com:8443' })) ?? '', /ALLOWED_ORIGINS/);
  });

  it('with ALLOWED_ORIGINS, allows those origins and the same origin only; * turns a check off', () => {
    const g = new HostOriginGuard({ allowedHosts: ['orch.example.com'], allowedOrigins: ['https://ci.example.com:8443'] }, () => 4000);
    assert.equal(g.refusal(req({ host: '127.0.0.1:4000', origin: 'https://ci.example.com:8443' })), null);
    assert.match(g.refusal(req({ host: '127.0.0.1:4000', origin: 'https://orch.example.com' })) ?? '', /ALLOWED_ORIGINS/);
    assert.equal(g.refusal(req({ host: '127.0.0.1:4000', origin: 'http://127.0.0.1:4000' })), null);
    const open = new HostOriginGuard({ allowedHosts: null, allowedOrigins: null }, () => 4000);
    assert.equal(open.refusal(req({ host: 'evil.example', origin: 'http://evil.example' })), null);
  });
});

describe('query cost and body recognition', () => {
  const limits = { depth: 10, cost: 10_000, aliases: 30, tokens: 5_000 };

  it('counts page sizes: the largest page is fine, plans of tests of plans are not', async () => {
    const schema = await createSchema();
    const cost = (q: string, v?: Record<string, unknown>) => costError(schema, parse(q), v, undefined, limits)?.message ?? 'ok';
    assert.equal(cost(`{ plan(id: "x") { tests(first: 500) { totalCount nodes { id name status attempts queuedAt result { exitCode stdout stderr errorMessage durationMs } } } } }`), 'ok');
    assert.equal(cost(`{ plans(first: 500) { nodes { id name status counts { queued running passed failed total } } } }`), 'ok');
    assert.equal(cost(`{ plans(first: 100000) { totalCount } }`), 'ok', 'the resolver refuses first > 500 with its own error');
    assert.match(cost(`{ plans(first: 500) { nodes { tests(first: 500) { nodes { id } } } } }`), /^query cost 501001 exceeds the limit of 10000 \(QUERY_COST_LIMIT\)/);
    assert.match(cost(`query($n: Int) { plans(first: $n) { nodes { tests { nodes { id name } } } } }`, { n: 100 }), /^query cost 15201 exceeds/);
    // a result's artifacts: a plain list sized like any other unless a page is asked for
    assert.equal(cost(`{ plan(id: "x") { tests(first: 100) { nodes { result { artifacts { name kind sizeBytes sha256 url } } } } } }`), 'ok');
    assert.match(cost(`{ plan(id: "x") { tests(first: 100) { nodes { result { artifacts(first: 500) { name } } } } } }`), /^query cost 50302 exceeds/);
    assert.equal(cost(`{ __schema { types { name fields { name args { name type { name ofType { name } } } } } } }`), 'ok', 'introspection is free');
  });

  it('stops parsing at QUERY_TOKEN_LIMIT with a message naming it', () => {
    assert.throws(() => parseLimited(`{ ${'a '.repeat(6000)} }`, limits), { message: 'the query has more than 5000 tokens, the limit (QUERY_TOKEN_LIMIT); nothing was run' });
  });

  it('recognises a body holding one submitPlan mutation only', () => {
    assert.equal(isSubmitPlanOnly(parse(`mutation($i: SubmitPlanInput!) { submitPlan(input: $i) { id } }`)), true);
    assert.equal(isSubmitPlanOnly(parse(`mutation { a: submitPlan(input: {}) { id } b: submitPlan(input: {}) { id } }`)), true);
    for (const q of [`{ plans { totalCount } }`, `mutation { cancelPlan(id: "x") { id } }`, `mutation { submitPlan(input: {}) { id } cancelPlan(id: "x") { id } }`,
      `mutation { ...F } fragment F on Mutation { submitPlan(input: {}) { id } }`, `mutation A { submitPlan(input: {}) { id } } query B { plans { totalCount } }`]) {
      assert.equal(isSubmitPlanOnly(parse(q)), false, q);
    }
    assert.equal(peekQuery(`{"query":"mutation { submitPlan }","variables":{"input":{"na`), 'mutation { submitPlan }');
    assert.equal(peekQuery(`{"operationName":null,"query":"a\\"b\\u0041"`), 'a"bA');
    assert.equal(peekQuery(`{"variables":{"x":"\\"query\\": \\"mutation\\""},"q`), null, 'a "query" inside a string is not the member');
    assert.equal(peekQuery(`{"query":"mutation { submitPl`), null, 'cut off');
  });
});
