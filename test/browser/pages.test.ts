// The pages in a real browser (Debian's chromium): /, /dashboard and /graphiql load with no page error,
// no console error, no failed request; the dashboard connects and shows the figures; GraphiQL renders,
// runs a query and shows its result.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { launchBrowser, screenshotOnFailure, text, waitFor, type Browser, type WatchedPage } from '../helpers/browser';
import { gqlOk } from '../helpers/gql';
import { startTestRedis, type TestRedis } from '../helpers/redis';
import { startTestServer, type TestServer } from '../helpers/server';

const SUBMIT = `mutation($input: SubmitPlanInput!) { submitPlan(input: $input) { id name } }`;

describe('the web pages in chromium', () => {
  let redis: TestRedis;
  let server: TestServer;
  let browser: Browser;

  before(async () => {
    redis = await startTestRedis();
    server = await startTestServer({ redisUrl: redis.url });
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
    await redis?.stop();
  });

  async function onPage(path: string, name: string, fn: (w: WatchedPage) => Promise<void>): Promise<void> {
    const w = await browser.open(`${server.url}${path}`);
    try {
      await screenshotOnFailure(w, name, () => fn(w));
    } finally {
      await w.close();
    }
  }

  for (const path of ['/', '/dashboard']) {
    it(`${path} is the live dashboard: it connects and shows the counts, pools and health`, () =>
      onPage(path, `dashboard${path.replace('/', '-')}`, async (w) => {
        const { page } = w;
        assert.equal(new URL(page.url()).pathname, path, 'no redirect');
        await waitFor(w, 'the dashboard says it is live', async () => (await text(page, '#conn')) === 'live');
        await waitFor(w, 'the pools and health tables are filled', async () =>
          (await page.locator('#pools tr').count()) > 0 && (await page.locator('#health tr').count()) > 0);
        const cards = await page.locator('#cards .card').allInnerTexts();
        for (const label of ['running', 'queued', 'passed', 'failed', 'workers']) {
          assert.ok(cards.some((c) => c.endsWith(label)), `a "${label}" card in ${JSON.stringify(cards)}`);
        }
        const pools = await page.locator('#pools tr td:first-child').allInnerTexts();
        assert.ok(pools.includes('container'), `the default pools are listed: ${pools}`);
        assert.equal(await page.locator('#banner').isVisible(), false, 'no banner while connected');

        // names are user input: a plan named like markup is shown as text (an <img> would also be a failed request)
        const hostile = `<img src="/x-${randomUUID().slice(0, 6)}" onerror="document.title='owned'"><b>${randomUUID().slice(0, 6)}</b>`;
        await gqlOk(server.url, SUBMIT, { input: { name: hostile, tests: [{ name: '<script>x</script>', type: 'UNIT', script: 'true' }] } });
        await waitFor(w, 'the plan named like markup is listed', async () =>
          (await page.locator('#plans td:first-child').allInnerTexts()).includes(hostile));
        assert.equal(await page.locator('#plans img, #plans b, #feed script').count(), 0, 'no element made from a name');
        assert.notEqual(await page.title(), 'owned');
        assert.equal(await page.locator('header a[href="/graphiql"]').innerText(), 'GraphiQL');
      }));
  }

  it('GraphiQL renders, runs a typed query with Ctrl-Enter and the default one with the run button, and shows the results', async () => {
    const name = `graphiql-${randomUUID().slice(0, 8)}`;
    const { submitPlan } = await gqlOk(server.url, SUBMIT, { input: { name, tests: [{ name: 'a', type: 'UNIT', script: 'true' }] } });
    await onPage('/graphiql', 'graphiql', async (w) => {
      const { page } = w;
      await page.locator('.graphiql-query-editor .CodeMirror').waitFor({ timeout: 30_000 });
      assert.equal(await page.getByText('Loading GraphiQL…').count(), 0);
      const editor = page.locator('.graphiql-query-editor .CodeMirror');
      const result = () => page.evaluate(`document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue()`) as Promise<string>;

      // the default query, run with the button
      await page.locator('.graphiql-execute-button').click();
      await waitFor(w, 'the default query has a result', async () => (await result()).includes('"systemStatus"'));
      const first = JSON.parse(await result());
      assert.equal(first.errors, undefined, await result());
      assert.ok(first.data.systemStatus.pools.some((p: any) => p.name === 'container'), await result());
      assert.ok(first.data.plans.nodes.some((p: any) => p.name === name), await result());

      // a query typed by hand (the editor closes brackets and quotes itself; typing over them is what a user does)
      await editor.click();
      await page.keyboard.press('Control+A');
      await page.keyboard.press('Delete');
      await page.keyboard.type(`{ plan(id: "${submitPlan.id}") { name tests(first: 5) { totalCount } } }`);
      await page.keyboard.press('Escape'); // closes an autocomplete popup, if one is open
      await page.keyboard.press('Control+Enter');
      await waitFor(w, 'the typed query has a result', async () => (await result()).includes(`"${name}"`));
      assert.deepEqual(JSON.parse(await result()), { data: { plan: { name, tests: { totalCount: 1 } } } });

      await page.locator('header a[href="/"]').click();
      await page.waitForURL(`${server.url}/`);
      await waitFor(w, 'the dashboard, reached from GraphiQL, is live', async () => (await text(page, '#conn')) === 'live');
    });
  });

  it('serves no inline script and forbids one (Content-Security-Policy)', async () => {
    for (const path of ['/', '/dashboard', '/graphiql']) {
      const res = await fetch(`${server.url}${path}`);
      assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self'/, path);
      assert.doesNotMatch(await res.text(), /<script>/, path);
    }
    for (const name of ['constructor', '__proto__', 'toString', '..%2Fpackage.json', 'nope.js']) {
      assert.equal((await fetch(`${server.url}/graphiql/assets/${name}`)).status, 404, name);
    }
  });
});
