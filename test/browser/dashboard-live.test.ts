// The dashboard in a real browser (Debian's chromium) against an API with a worker running tests in the
// real sandbox: a plan submitted through the API appears, its counts change as its tests run, with no
// reload; the page says when it is disconnected and catches up when the API is back.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { serveApi } from '../../src/app';
import { launchBrowser, screenshotOnFailure, tableRows, text, waitFor, type Browser, type WatchedPage } from '../helpers/browser';
import { gqlOk } from '../helpers/gql';
import { startTestRedis, type TestRedis } from '../helpers/redis';
import { startTestServer, type TestServer } from '../helpers/server';

const SUBMIT = `mutation($input: SubmitPlanInput!) { submitPlan(input: $input) { id name } }`;
const POOLS = JSON.stringify([
  { name: 'container', kind: 'CONTAINER', cpus: 1, memoryMb: 256, image: 'debian-bookworm', capacity: 1, pids: 64, testTypes: ['UNIT'] },
]);

describe('the live dashboard in chromium', () => {
  let redis: TestRedis;
  let server: TestServer;
  let browser: Browser;

  before(async () => {
    redis = await startTestRedis();
    server = await startTestServer({ redisUrl: redis.url, worker: true, env: { POOLS, WORKER_HEARTBEAT_MS: '1000' } });
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
    await redis?.stop();
  });

  async function onDashboard(name: string, fn: (w: WatchedPage) => Promise<void>): Promise<void> {
    const w = await browser.open(`${server.url}/`);
    try {
      await screenshotOnFailure(w, name, async () => {
        await waitFor(w, 'the dashboard says it is live', async () => (await text(w.page, '#conn')) === 'live');
        await fn(w);
      });
    } finally {
      await w.close();
    }
  }

  const planRow = async (w: WatchedPage, name: string) => (await tableRows(w.page, 'table:has(#plans)')).find((r) => r.plan === name);
  const card = async (w: WatchedPage, label: string) => Number(await text(w.page, `#cards .card[data-card="${label}"] b`));

  it('shows a plan submitted through the API, and its counts change as it runs, without a reload', () =>
    onDashboard('dashboard-live-plan', async (w) => {
      const { page } = w;
      await page.evaluate('window.__sameDocument = true');
      const passedBefore = await card(w, 'passed');
      const submit = (name: string, script: string) =>
        gqlOk(server.url, SUBMIT, { input: { name, tests: [{ name: 'only', type: 'UNIT', script, timeoutSeconds: 900 }] } }).then((d) => d.submitPlan);
      // the pool has one slot: a blocker holds it, so the plan after it waits in the queue until we say
      const blocker = await submit(`blocker-${randomUUID().slice(0, 8)}`, 'exec sleep 600');
      await waitFor(w, 'the blocker runs', async () => (await planRow(w, blocker.name))?.status === 'RUNNING');
      const plan = await submit(`live-${randomUUID().slice(0, 8)}`, 'echo hi');

      await waitFor(w, `the row of plan ${plan.name}`, async () => (await planRow(w, plan.name)) !== undefined);
      const first = (await planRow(w, plan.name))!;
      assert.deepEqual([first.status, first.queued, first.passed, first.total], ['QUEUED', '1', '0', '1'], JSON.stringify(first));

      await gqlOk(server.url, `mutation($id: ID!) { cancelPlan(id: $id) { id } }`, { id: blocker.id });
      await waitFor(w, 'the blocker shows CANCELLED', async () => (await planRow(w, blocker.name))?.status === 'CANCELLED');
      await waitFor(w, 'the plan runs and passes', async () => {
        const r = await planRow(w, plan.name);
        return r?.status === 'PASSED' && r.passed === '1' && r.queued === '0' && r.running === '0';
      });
      await waitFor(w, 'the passed card counts the passed test', async () => (await card(w, 'passed')) === passedBefore + 1);
      await waitFor(w, 'the feed shows the test passing', async () =>
        (await tableRows(page, 'table:has(#feed)')).some((r) => r.test === `${plan.name} / only` && r.status === 'PASSED'));
      assert.equal(await page.evaluate('window.__sameDocument'), true, 'the page was not reloaded');

      // its name opens GraphiQL with a query for its tests; running it shows how each ended
      await page.getByRole('link', { name: plan.name, exact: true }).click();
      await page.waitForURL(/\/graphiql\?query=/);
      await page.locator('.graphiql-query-editor .CodeMirror').waitFor({ timeout: 30_000 });
      await page.locator('.graphiql-execute-button').click();
      const result = () => page.evaluate(`document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue()`) as Promise<string>;
      await waitFor(w, 'the plan query has a result', async () => (await result()).includes(`"${plan.name}"`));
      const tests = JSON.parse(await result()).data.plan.tests.nodes;
      assert.deepEqual(tests.map((t: any) => [t.name, t.status, t.result.exitCode]), [['only', 'PASSED', 0]]);
    }));

  it('says when it is disconnected, and catches up when the API is back', () =>
    onDashboard('dashboard-disconnected', async (w) => {
      const { page } = w;
      const port = server.api.port;
      // while the API is down the browser's reconnection attempts fail: those errors are expected
      w.expect(new RegExp(`ws://127\\.0\\.0\\.1:${port}/graphql`));
      await page.evaluate('window.__sameDocument = true');
      assert.equal(await page.locator('#banner').isVisible(), false);

      await server.api.close();
      await waitFor(w, 'the page says it is disconnected', async () => (await text(page, '#conn')) === 'disconnected');
      assert.match(await text(page, '#banner'), /Disconnected from the orchestrator; reconnecting… The figures below are from .* may be out of date/);

      // meanwhile a plan arrives through another API process of the same deployment
      const other = await serveApi(server.core, { host: '127.0.0.1', port: 0 });
      const name = `while-away-${randomUUID().slice(0, 8)}`;
      try {
        await gqlOk(other.url, SUBMIT, { input: { name, tests: [{ name: 'a', type: 'UNIT', script: 'true' }] } });
      } finally {
        await other.close();
      }

      const back = await serveApi(server.core, { host: '127.0.0.1', port }); // the same URL as before
      try {
        await waitFor(w, 'the page is live again', async () => (await text(page, '#conn')) === 'live');
        assert.equal(await page.locator('#banner').isVisible(), false, 'the banner is gone');
        await waitFor(w, `the plan submitted while away (${name})`, async () => (await planRow(w, name)) !== undefined);
        await waitFor(w, 'it passed', async () => (await planRow(w, name))?.status === 'PASSED');
        assert.equal(await page.evaluate('window.__sameDocument'), true, 'the page was not reloaded');
        w.check();
      } finally {
        await w.close();
        await back.close();
      }
    }));
});
