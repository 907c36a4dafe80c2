// Issue 11: the pages with AUTH=on, in a real browser (Debian's chromium). The dashboard asks for a
// token before it loads anything; a wrong one is refused in the form; a right one makes it live and is
// kept in the tab's sessionStorage, so GraphiQL, opened from it, runs queries without asking again. A
// token revoked while the dashboard is open makes it ask again.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { launchBrowser, screenshotOnFailure, text, waitFor, type Browser } from '../helpers/browser';
import { gqlAs } from '../helpers/auth';
import { startTestRedis, type TestRedis } from '../helpers/redis';
import { startTestServer, type TestServer } from '../helpers/server';

describe('the web pages with AUTH=on, in chromium', () => {
  let redis: TestRedis;
  let server: TestServer;
  let browser: Browser;
  let viewer = '';
  let viewerId = '';
  let admin = '';

  before(async () => {
    redis = await startTestRedis();
    server = await startTestServer({
      redisUrl: redis.url,
      env: { AUTH: 'on' },
      beforeServe: async (core) => {
        const v = await core.services.tokens.create('browser-viewer', 'VIEWER');
        viewer = v.token;
        viewerId = v.apiToken.id;
        admin = (await core.services.tokens.create('browser-admin', 'ADMIN')).token;
      },
    });
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
    await redis?.stop();
  });

  it('the dashboard asks for a token, refuses a wrong one, goes live with a right one; GraphiQL then uses it; a revocation makes it ask again', async () => {
    const w = await browser.open(`${server.url}/`);
    try {
      await screenshotOnFailure(w, 'dashboard-auth', async () => {
        const { page } = w;
        await page.locator('#token-form').waitFor({ timeout: 30_000 });
        assert.notEqual(await text(page, '#conn'), 'live', 'nothing connects before a token is given');
        assert.equal(await page.locator('#pools tr').count(), 0, 'no data without a token');

        w.expect(/HTTP 401: POST .*\/graphql/); // the check of the wrong token below, as the network and the console report it
        w.expect(/status of 401 \(Unauthorized\) \(http:\/\/127\.0\.0\.1:\d+\/graphql\)/);
        await page.locator('#token-input').fill(`orch_${'A'.repeat(43)}`);
        await page.locator('#token-form button').click();
        await waitFor(w, 'the wrong token is refused in the form', async () => /refused/.test(await text(page, '#token-message')));
        assert.equal(await page.locator('#token-form').count(), 1);

        await page.locator('#token-input').fill(viewer);
        await page.locator('#token-form button').click();
        await waitFor(w, 'the dashboard is live with the token', async () => (await text(page, '#conn')) === 'live');
        await waitFor(w, 'the pools table is filled', async () => (await page.locator('#pools tr').count()) > 0);
        assert.equal(await page.locator('#token-form').count(), 0);
        assert.equal(await page.evaluate(`sessionStorage.getItem('orchestrator-token')`), viewer, 'kept in sessionStorage');
        assert.equal(await page.evaluate(`localStorage.length`), 0, 'not in localStorage');

        // GraphiQL in the same tab: the same token, no question
        await page.locator('header a[href="/graphiql"]').click();
        await page.waitForURL(`${server.url}/graphiql`);
        await page.locator('.graphiql-query-editor .CodeMirror').waitFor({ timeout: 30_000 });
        assert.equal(await page.locator('#token-form').count(), 0, 'GraphiQL does not ask again');
        const result = () => page.evaluate(`document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue()`) as Promise<string>;
        await page.locator('.graphiql-execute-button').click();
        await waitFor(w, 'the default query has a result', async () => (await result()).includes('"systemStatus"'));
        assert.equal(JSON.parse(await result()).errors, undefined, await result());

        // back on the dashboard, the token is revoked: the live connection is closed (4401) and the page asks again
        await page.locator('header a[href="/"]').click();
        await page.waitForURL(`${server.url}/`);
        await waitFor(w, 'live again', async () => (await text(page, '#conn')) === 'live');
        w.expect(/HTTP 401|WebSocket/);
        const r = await gqlAs(server.url, admin, 'mutation($id: ID!) { revokeToken(id: $id) { revokedAt } }', { id: viewerId });
        assert.ok(r.data?.revokeToken?.revokedAt, JSON.stringify(r));
        await waitFor(w, 'the page asks for a token again', async () => (await page.locator('#token-form').count()) === 1);
        assert.match(await text(page, '#token-message'), /closed the connection|refused/);
        assert.equal(await page.evaluate(`sessionStorage.getItem('orchestrator-token')`), null, 'the revoked token is forgotten');
      });
    } finally {
      await w.close();
    }
  });

  it('serves the pages and their scripts without a token, but none of the data', async () => {
    for (const path of ['/', '/graphiql', '/graphiql/assets/auth.js', '/graphiql/assets/dashboard.js']) assert.equal((await fetch(`${server.url}${path}`)).status, 200, path);
    assert.equal((await fetch(`${server.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"query":"{ plans { totalCount } }"}' })).status, 401);
  });
});
