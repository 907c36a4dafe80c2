// The script of the GraphiQL page, served as /graphiql/assets/graphiql-page.js. String.raw keeps it as
// written: no escape sequence of this file is turned into a character (a '\n' stays backslash-n).
export const GRAPHIQL_SCRIPT = String.raw`'use strict';
(function () {
  var ws = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/graphql';
  var fetcher = GraphiQL.createFetcher({
    url: '/graphql',
    wsClient: graphqlWs.createClient({ url: ws, retryAttempts: 5 }),
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
})();
`;
