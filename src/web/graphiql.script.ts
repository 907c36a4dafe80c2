// The script of the GraphiQL page, served as /graphiql/assets/graphiql-page.js. String.raw keeps it as
// written: no escape sequence of this file is turned into a character (a '\n' stays backslash-n).
export const GRAPHIQL_SCRIPT = String.raw`'use strict';
(function () {
  var auth = window.orchestratorAuth;
  auth.whenReady(function () {
  var ws = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/graphql';
  var fetcher = GraphiQL.createFetcher({
    url: '/graphql',
    headers: auth.headers(), // with AUTH=on, the tab's token
    wsClient: graphqlWs.createClient({
      url: ws,
      retryAttempts: 5,
      connectionParams: function () { return auth.connectionParams(); },
      shouldRetry: function (e) { return !(e && e.code === 4401); },
      on: { closed: function (e) { if (e && e.code === 4401) auth.refused('The server closed the connection (' + e.reason + ')'); } },
    }),
  });
  var defaultQuery = [
    '# The orchestrator at a glance. Run it with Ctrl-Enter or the ▶ button.',
    '# Subscriptions work here too, e.g. subscription { testUpdated { name status } }',
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
  var props = { fetcher: fetcher, defaultQuery: defaultQuery };
  // a link such as the dashboard's plan links: /graphiql?query=… opens that query (it runs on Ctrl-Enter)
  var asked = new URLSearchParams(location.search).get('query');
  if (asked) props.query = asked;
  ReactDOM.createRoot(document.getElementById('graphiql')).render(React.createElement(GraphiQL, props));
  });
})();
`;
