// The live page at /dashboard: counts, pools, workers and component health, recent plans and the latest
// test changes, all pushed over graphql-ws as they happen. Plain DOM and textContent only: test and
// plan names are user input and never become HTML.
import type { Express } from 'express';
import { servePage } from './page';

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Test orchestrator · live</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
  header { background: #1d2330; color: #fff; padding: 10px 20px; display: flex; gap: 16px; align-items: center; }
  header a { color: #9cc3ff; }
  #conn { margin-left: auto; font-size: 12px; }
  main { padding: 16px 20px; display: grid; gap: 16px; grid-template-columns: 1fr 1fr; }
  section { background: #fff; border-radius: 8px; padding: 12px 16px; box-shadow: 0 1px 2px #0001; }
  section.wide { grid-column: 1 / -1; }
  h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .05em; color: #5b6475; margin: 0 0 8px; }
  .cards { display: flex; gap: 12px; flex-wrap: wrap; }
  .card { min-width: 110px; padding: 8px 12px; border-radius: 6px; background: #f4f5f7; }
  .card b { display: block; font-size: 22px; }
  table { width: 100%; border-collapse: collapse; }
  th, td { text-align: left; padding: 4px 6px; border-bottom: 1px solid #eceef2; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; max-width: 360px; }
  .s-PASSED { color: #137333; } .s-FAILED, .s-TIMED_OUT, .s-ERROR { color: #c5221f; } .s-RUNNING { color: #1a73e8; } .s-CANCELLED { color: #80868b; }
  .ok { color: #137333; } .bad { color: #c5221f; }
</style>
</head>
<body>
<header><strong>Test orchestrator</strong> <span>live</span> <a href="/graphiql">GraphiQL</a> <span id="conn">connecting…</span></header>
<main>
  <section class="wide"><h2>Tests</h2><div class="cards" id="cards"></div></section>
  <section><h2>Pools</h2><table><thead><tr><th>pool</th><th>kind</th><th>capacity</th><th>ready</th><th>busy</th><th>unhealthy</th><th>queued</th></tr></thead><tbody id="pools"></tbody></table></section>
  <section><h2>Health</h2><table><tbody id="health"></tbody></table></section>
  <section class="wide"><h2>Plans</h2><table><thead><tr><th>plan</th><th>status</th><th>priority</th><th>passed</th><th>failed</th><th>running</th><th>queued</th><th>total</th><th>created</th></tr></thead><tbody id="plans"></tbody></table></section>
  <section class="wide"><h2>Latest test changes</h2><table><thead><tr><th>time</th><th>test</th><th>status</th><th>attempt</th><th>why</th></tr></thead><tbody id="feed"></tbody></table></section>
</main>
<script src="/graphiql/assets/graphql-ws.js"></script>
<script>
const el = (tag, text, cls) => { const e = document.createElement(tag); if (text !== undefined && text !== null) e.textContent = String(text); if (cls) e.className = cls; return e; };
const row = (cells) => { const tr = el('tr'); for (const c of cells) tr.append(c instanceof Node ? c : el('td', c)); return tr; };
const statusCell = (s) => el('td', s, 's-' + s);
const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/graphql';
const client = graphqlWs.createClient({ url, retryAttempts: Infinity, shouldRetry: () => true,
  on: { connected: () => { document.getElementById('conn').textContent = 'live'; }, closed: () => { document.getElementById('conn').textContent = 'reconnecting…'; } } });
const sub = (query, next) => client.subscribe({ query }, { next: (r) => r.data && next(r.data), error: (e) => console.error(e), complete: () => {} });
const query = (q) => fetch('/graphql', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: q }) }).then((r) => r.json());

function showStatus(s) {
  const cards = document.getElementById('cards'); cards.replaceChildren();
  const c = s.counts;
  for (const [label, n] of [['running', s.activeTests], ['queued', s.queuedTests], ['completed', s.completedTests], ['passed', c.passed], ['failed', c.failed], ['timed out', c.timedOut], ['error', c.error], ['cancelled', c.cancelled], ['workers', s.workers]]) {
    const card = el('div', null, 'card'); card.append(el('b', n), el('span', label)); cards.append(card);
  }
  document.getElementById('pools').replaceChildren(...s.pools.map((p) => row([p.name, p.kind, p.capacity, p.ready, p.busy, p.unhealthy, p.queuedTests])));
  document.getElementById('health').replaceChildren(...s.components.map((h) => row([h.name, el('td', h.healthy ? 'healthy' : 'unhealthy', h.healthy ? 'ok' : 'bad'), h.detail || ''])));
}

const plans = new Map();
function showPlans() {
  const list = [...plans.values()].sort((a, b) => b.createdAt.localeCompare(a.createdAt)).slice(0, 25);
  document.getElementById('plans').replaceChildren(...list.map((p) => row([p.name, statusCell(p.status), p.priority, p.counts.passed, p.counts.failed + p.counts.timedOut + p.counts.error, p.counts.running, p.counts.queued, p.counts.total, new Date(p.createdAt).toLocaleTimeString()])));
}
const PLAN_FIELDS = 'id name status priority createdAt counts { passed failed timedOut error running queued total }';

sub('subscription { systemStatusUpdated { activeTests queuedTests completedTests workers counts { passed failed timedOut error cancelled } pools { name kind capacity ready busy unhealthy queuedTests } components { name healthy detail } } }',
  (d) => showStatus(d.systemStatusUpdated));
sub('subscription { planUpdated { ' + PLAN_FIELDS + ' } }', (d) => { plans.set(d.planUpdated.id, d.planUpdated); showPlans(); });
sub('subscription { testUpdated { name status attempts plan { name } result { errorMessage } } }', (d) => {
  const t = d.testUpdated;
  const feed = document.getElementById('feed');
  feed.prepend(row([new Date().toLocaleTimeString(), t.plan.name + ' / ' + t.name, statusCell(t.status), t.attempts, (t.result && t.result.errorMessage) || '']));
  while (feed.children.length > 50) feed.lastChild.remove();
});
query('{ plans(first: 25) { nodes { ' + PLAN_FIELDS + ' } } }').then((r) => { for (const p of r.data.plans.nodes) if (!plans.has(p.id)) plans.set(p.id, p); showPlans(); });
</script>
</body>
</html>
`;

export function mountDashboard(app: Express): void {
  servePage(app, '/dashboard', PAGE);
}
