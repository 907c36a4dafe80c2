// A self-hosted GraphiQL at /graphiql: queries over HTTP, subscriptions over graphql-ws on the same
// /graphql endpoint. Its script is a file of its own (see graphiql.script.ts), so the page runs no
// inline code and can forbid it. /graphiql?query=… opens with that query in the editor.
import type { Express } from 'express';
import { ASSET_PREFIX } from './assets';
import { AUTH_META, servePage } from './page';

const CSS = `
html, body { height: 100%; margin: 0; }
body { display: flex; flex-direction: column; font: 14px/1.4 system-ui, sans-serif; }
header { background: #1d2330; color: #fff; padding: 6px 20px; display: flex; gap: 16px; align-items: center; }
header a { color: #9cc3ff; }
#graphiql { flex: 1; min-height: 0; }
`;

const PAGE = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  ${AUTH_META}
  <title>Test orchestrator · GraphiQL</title>
  <link rel="stylesheet" href="${ASSET_PREFIX}graphiql.css">
  <style>${CSS}</style>
</head>
<body>
  <header><strong>Test orchestrator</strong> <a href="/">Dashboard</a> <span>GraphiQL</span></header>
  <div id="graphiql">Loading GraphiQL…</div>
  <noscript>GraphiQL needs JavaScript.</noscript>
  <script src="${ASSET_PREFIX}react.js"></script>
  <script src="${ASSET_PREFIX}react-dom.js"></script>
  <script src="${ASSET_PREFIX}graphql-ws.js"></script>
  <script src="${ASSET_PREFIX}graphiql.js"></script>
  <script src="${ASSET_PREFIX}auth.js"></script>
  <script src="${ASSET_PREFIX}graphiql-page.js"></script>
</body>
</html>
`;


export function mountGraphiql(app: Express, auth: boolean): void {
  servePage(app, ['/graphiql'], PAGE, auth);
}
