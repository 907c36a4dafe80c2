// A self-hosted GraphiQL at /graphiql: every asset comes from this server's node_modules, nothing from a
// CDN (machines running the orchestrator are often offline). Queries over HTTP, subscriptions over
// graphql-ws on the same /graphql endpoint.
import { dirname, join } from 'node:path';
import type { Express } from 'express';
import { servePage } from './page';

const dir = (pkg: string) => dirname(require.resolve(`${pkg}/package.json`));

/** The only files served: name → path. */
const ASSETS: Record<string, { path: string; type: string }> = {
  'react.js': { path: join(dir('react'), 'umd/react.production.min.js'), type: 'text/javascript' },
  'react-dom.js': { path: join(dir('react-dom'), 'umd/react-dom.production.min.js'), type: 'text/javascript' },
  'graphql-ws.js': { path: join(dir('graphql-ws'), 'umd/graphql-ws.min.js'), type: 'text/javascript' },
  'graphiql.js': { path: join(dir('graphiql'), 'graphiql.min.js'), type: 'text/javascript' },
  'graphiql.css': { path: join(dir('graphiql'), 'graphiql.min.css'), type: 'text/css' },
};

const PAGE = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Test orchestrator · GraphiQL</title>
  <style>html, body, #graphiql { height: 100%; margin: 0; }</style>
  <link rel="stylesheet" href="/graphiql/assets/graphiql.css">
</head>
<body>
  <div id="graphiql">Loading GraphiQL…</div>
  <script src="/graphiql/assets/react.js"></script>
  <script src="/graphiql/assets/react-dom.js"></script>
  <script src="/graphiql/assets/graphql-ws.js"></script>
  <script src="/graphiql/assets/graphiql.js"></script>
  <script>
    const ws = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/graphql';
    const fetcher = GraphiQL.createFetcher({ url: '/graphql', wsClient: graphqlWs.createClient({ url: ws }) });
    const defaultQuery = [
      '# The orchestrator at a glance. Subscriptions work here too, e.g.',
      '# subscription { testUpdated { name status } }',
      '{',
      '  systemStatus {',
      '    activeTests queuedTests completedTests',
      '    workers healthy',
      '    pools { name capacity ready busy queuedTests }',
      '    components { name healthy detail }',
      '  }',
      '  plans(first: 5) {',
      '    nodes { id name status counts { passed failed total } }',
      '  }',
      '}',
      '',
    ].join('\n');
    ReactDOM.createRoot(document.getElementById('graphiql')).render(React.createElement(GraphiQL, { fetcher, defaultQuery }));
  </script>
</body>
</html>
`;

export function mountGraphiql(app: Express): void {
  servePage(app, '/graphiql', PAGE);
  app.get('/graphiql/assets/:name', (req, res) => {
    const asset = ASSETS[String(req.params.name)];
    if (!asset) {
      res.status(404).end();
      return;
    }
    res.setHeader('Cache-Control', 'public, max-age=3600');
    res.type(asset.type).sendFile(asset.path);
  });
  // a browser opening the API's URL gets the IDE
  app.get('/', (_req, res) => res.redirect('/graphiql'));
}
