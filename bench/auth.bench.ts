// The cost of authentication per request (issue 11): the same small query over HTTP to two APIs on the
// same core (database, Redis) — one with AUTH=off, one with AUTH=on and a valid token (looked up once,
// then from memory) — p50 of each and the difference; also a well-formed but unknown token (one indexed
// lookup per request, answered 401) and the in-process cost of authenticate() on a known token.
import { createSchema } from '../src/api/schema';
import { LiveEvents } from '../src/api/live';
import { startApiServer } from '../src/api/server';
import { fmtMs, latency, now, type Section } from './bench-kit';

const QUERY = JSON.stringify({ query: '{ __typename }' });

export const authCost: Section = {
  description: 'authentication per request: p50 of a small query without auth, with a token, with an unknown token',
  async run(ctx) {
    const core = ctx.server.core;
    const { token } = await core.services.tokens.create(`bench-${Date.now()}`, 'VIEWER');
    await core.authenticator.start();
    const onApi = await startApiServer({
      schema: await createSchema(),
      services: core.services,
      live: new LiveEvents(core.events, core.services.status, core.logger),
      logger: core.logger,
      host: '127.0.0.1',
      port: 0,
      maxRequestBytes: core.config.maxRequestBytes,
      security: core.config.apiSecurity,
      auth: { ...core.config.auth, enabled: true },
      ready: async () => undefined,
    });
    try {
      const post = (url: string, authorization?: string, expect = 200) => async () => {
        const res = await fetch(`${url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) }, body: QUERY });
        await res.arrayBuffer();
        if (res.status !== expect) throw new Error(`HTTP ${res.status}, expected ${expect}`);
      };
      const count = ctx.options.requests;
      const off = await latency(post(ctx.server.url), { count });
      const on = await latency(post(onApi.url, `Bearer ${token}`), { count });
      const unknown = await latency(post(onApi.url, `Bearer orch_${'A'.repeat(43)}`, 401), { count });
      const n = 20_000;
      const start = now();
      for (let i = 0; i < n; i++) await core.authenticator.authenticate(token);
      const perCall = (now() - start) / n;
      ctx.record({ key: 'auth-off', measure: `{ __typename } over HTTP, AUTH=off (p50 of ${count})`, value: off.stats.p50, unit: 'ms', detail: `p95 ${fmtMs(off.stats.p95)}; ${Math.round(off.perSecond)}/s at 8 in flight` });
      ctx.record({
        key: 'auth-on',
        measure: `{ __typename } over HTTP, AUTH=on with a valid token (p50 of ${count})`,
        value: on.stats.p50,
        unit: 'ms',
        detail: `p95 ${fmtMs(on.stats.p95)}; ${Math.round(on.perSecond)}/s; +${fmtMs(on.stats.p50 - off.stats.p50)} at p50 over AUTH=off`,
      });
      ctx.record({ key: 'auth-unknown', measure: `an unknown token, answered 401 (p50 of ${count})`, value: unknown.stats.p50, unit: 'ms', detail: `one indexed lookup each; p95 ${fmtMs(unknown.stats.p95)}` });
      ctx.record({ key: 'auth-call', measure: `authenticate() of a known token in process (mean of ${n})`, value: perCall * 1000, unit: 'µs', detail: 'sha256 of the secret and a map lookup' });
    } finally {
      await onApi.close();
    }
  },
};
