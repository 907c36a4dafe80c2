// The live page at / and /dashboard: counts, pools, workers and component health, recent plans and the
// latest test changes, all pushed over graphql-ws as they happen; it says when it is disconnected. Its
// script (dashboard.script.ts) writes with textContent only: test and plan names are user input and
// never become HTML.
import type { Express } from 'express';
import { ASSET_PREFIX } from './assets';
import { AUTH_META, servePage } from './page';

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
${AUTH_META}
<title>Test orchestrator · live</title>
<link rel="stylesheet" href="${ASSET_PREFIX}dashboard.css">
</head>
<body data-connection="connecting">
<header><strong>Test orchestrator</strong> <span>live dashboard</span> <a href="/graphiql">GraphiQL</a>
  <span id="updated"></span> <span id="conn" role="status">connecting…</span></header>
<div id="banner" role="alert" hidden></div>
<noscript><div id="noscript">The dashboard needs JavaScript.</div></noscript>
<main>
  <section class="wide"><h2>Tests</h2><div class="cards" id="cards"></div></section>
  <section><h2>Pools</h2><table><thead><tr><th>pool</th><th>kind</th><th>capacity</th><th>ready</th><th>busy</th><th>unhealthy</th><th>queued</th></tr></thead><tbody id="pools"></tbody></table></section>
  <section><h2>Health</h2><table><tbody id="health"></tbody></table></section>
  <section class="wide"><h2>Plans</h2><table><thead><tr><th>plan</th><th>status</th><th>priority</th><th>passed</th><th>failed</th><th>running</th><th>queued</th><th>total</th><th>created</th></tr></thead><tbody id="plans"></tbody></table></section>
  <section class="wide"><h2>Latest test changes</h2><table><thead><tr><th>time</th><th>test</th><th>status</th><th>attempt</th><th>why</th></tr></thead><tbody id="feed"></tbody></table></section>
</main>
<script src="${ASSET_PREFIX}graphql-ws.js"></script>
<script src="${ASSET_PREFIX}auth.js"></script>
<script src="${ASSET_PREFIX}dashboard.js"></script>
</body>
</html>
`;

export const DASHBOARD_CSS = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
header { background: #1d2330; color: #fff; padding: 10px 20px; display: flex; gap: 16px; align-items: center; }
header a { color: #9cc3ff; }
#updated { margin-left: auto; font-size: 12px; color: #aab3c5; }
#conn { font-size: 12px; padding: 2px 8px; border-radius: 10px; background: #5b6475; }
body[data-connection="live"] #conn { background: #137333; }
body[data-connection="disconnected"] #conn { background: #c5221f; }
#banner, #noscript { background: #fce8e6; color: #a50e0e; padding: 8px 20px; border-bottom: 1px solid #f4c7c3; }
body[data-connection="disconnected"] main { opacity: .55; }
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
`;

export function mountDashboard(app: Express, auth: boolean): void {
  // people open the root URL to see what is going on: it is the dashboard, not a redirect
  servePage(app, ['/', '/dashboard'], PAGE, auth);
}
