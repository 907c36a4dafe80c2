// The script of the dashboard, served as /graphiql/assets/dashboard.js. String.raw keeps it as written
// (no escape sequence here becomes a character). It writes text only (textContent), never HTML.
//
// Connection: one graphql-ws client that retries forever (every 0.5 s, doubling up to 5 s). A ping every
// 10 s with no pong within 5 s drops a socket that went silent (a host that vanished without closing
// it). While no socket is up the page says so in a banner and greys the figures; on each (re)connect it
// fetches the plans again, since events sent meanwhile were missed (systemStatusUpdated sends the
// current state on subscribe by itself).
export const DASHBOARD_SCRIPT = String.raw`'use strict';
window.orchestratorAuth.whenReady(function () {
  var auth = window.orchestratorAuth;
  var MAX_PLANS = 25;
  var MAX_FEED = 50;
  var PLAN_FIELDS = 'id name status priority createdAt counts { passed failed timedOut error running queued total }';

  var $ = function (id) { return document.getElementById(id); };
  var el = function (tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  };
  var row = function (cells) {
    var tr = el('tr');
    cells.forEach(function (c) { tr.append(c instanceof Node ? c : el('td', c)); });
    return tr;
  };
  var statusCell = function (s) { return el('td', s, 's-' + s); };
  var clock = function (d) { return d.toLocaleTimeString(); };

  // --- connection state, shown in the header and, when down, in a banner --------------------------
  var lastData = null;
  var problems = new Map(); // what failed → message, shown until that same thing works again
  function setConnection(state) {
    document.body.dataset.connection = state;
    $('conn').textContent = state === 'live' ? 'live' : state === 'disconnected' ? 'disconnected' : 'connecting…';
    var banner = $('banner');
    if (state === 'disconnected') {
      banner.textContent = 'Disconnected from the orchestrator; reconnecting… ' +
        (lastData ? 'The figures below are from ' + clock(lastData) + ' and may be out of date.' : 'No figures yet.');
      banner.hidden = false;
    } else if (problems.size) {
      banner.textContent = Array.from(problems.values()).join(' · ');
      banner.hidden = false;
    } else {
      banner.hidden = true;
    }
  }
  function showProblem(what, err) {
    var msg = err && err.message ? err.message : Array.isArray(err) ? err.map(function (e) { return e.message; }).join('; ') : String(err);
    problems.set(what, what + ' failed: ' + msg);
    setConnection(document.body.dataset.connection);
  }
  function solved(what) {
    if (problems.delete(what)) setConnection(document.body.dataset.connection);
  }
  function touched() {
    lastData = new Date();
    $('updated').textContent = 'updated ' + clock(lastData);
  }

  // --- data ------------------------------------------------------------------------------------------
  function showStatus(s) {
    var c = s.counts;
    var cards = [['running', s.activeTests], ['queued', s.queuedTests], ['completed', s.completedTests], ['passed', c.passed],
      ['failed', c.failed], ['timed out', c.timedOut], ['error', c.error], ['cancelled', c.cancelled], ['workers', s.workers]];
    $('cards').replaceChildren.apply($('cards'), cards.map(function (x) {
      var card = el('div', null, 'card');
      card.dataset.card = x[0];
      card.append(el('b', x[1]), el('span', x[0]));
      return card;
    }));
    $('pools').replaceChildren.apply($('pools'), s.pools.map(function (p) {
      return row([p.name, p.kind, p.capacity, p.ready, p.busy, p.unhealthy, p.queuedTests]);
    }));
    $('health').replaceChildren.apply($('health'), s.components.map(function (h) {
      return row([h.name, el('td', h.healthy ? 'healthy' : 'unhealthy', h.healthy ? 'ok' : 'bad'), h.detail || '']);
    }));
    touched();
  }

  // what a click on a plan's name opens in GraphiQL: its tests, with why they failed
  function planQuery(id) {
    return ['query Plan {', '  plan(id: ' + JSON.stringify(id) + ') {', '    name status createdAt',
      '    counts { passed failed timedOut error cancelled running queued total }',
      '    tests(first: 25) {', '      nodes {', '        name status attempts',
      '        result { exitCode signal timedOut durationMs errorMessage stderr }',
      '      }', '    }', '  }', '}', ''].join('\n');
  }

  var plans = new Map(); // id → { plan, seq }: seq orders what arrived, pushed or fetched
  var seq = 0;
  function showPlans() {
    var list = Array.from(plans.values(), function (x) { return x.plan; })
      .sort(function (a, b) { return b.createdAt.localeCompare(a.createdAt); });
    list.slice(MAX_PLANS).forEach(function (p) { plans.delete(p.id); });
    $('plans').replaceChildren.apply($('plans'), list.slice(0, MAX_PLANS).map(function (p) {
      var link = el('a', p.name);
      link.href = '/graphiql?' + new URLSearchParams({ query: planQuery(p.id) });
      link.title = 'open ' + p.name + ' with its tests and their output in GraphiQL';
      var name = el('td');
      name.append(link);
      var tr = row([name, statusCell(p.status), p.priority, p.counts.passed, p.counts.failed + p.counts.timedOut + p.counts.error,
        p.counts.running, p.counts.queued, p.counts.total, clock(new Date(p.createdAt))]);
      tr.dataset.planId = p.id;
      return tr;
    }));
  }

  function showTest(t) {
    var feed = $('feed');
    var name = t.plan.name + ' / ' + t.name;
    var cell = el('td', name);
    cell.title = name;
    feed.prepend(row([clock(new Date()), cell, statusCell(t.status), t.attempts, (t.result && t.result.errorMessage) || '']));
    while (feed.children.length > MAX_FEED) feed.lastChild.remove();
    touched();
  }

  // --- transport -------------------------------------------------------------------------------------
  var socket = null;
  var pongTimer = null;
  var client = graphqlWs.createClient({
    url: (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/graphql',
    retryAttempts: Infinity,
    // a refused token (close 4401) is not retried: the page asks for another
    shouldRetry: function (e) { return !(e && e.code === 4401); },
    retryWait: function (retries) {
      return new Promise(function (resolve) { setTimeout(resolve, Math.min(5000, 500 * Math.pow(2, retries))); });
    },
    keepAlive: 10000,
    connectionParams: function () { return auth.connectionParams(); },
    on: {
      connecting: function () { if (document.body.dataset.connection !== 'disconnected') setConnection('connecting'); },
      opened: function (s) { socket = s; },
      connected: function () { setConnection('live'); loadPlans(); },
      closed: function (e) {
        socket = null;
        clearTimeout(pongTimer);
        setConnection('disconnected');
        if (e && e.code === 4401) auth.refused('The server closed the connection (' + e.reason + ')');
      },
      ping: function (received) {
        if (received) return;
        pongTimer = setTimeout(function () { if (socket) client.terminate(); }, 5000);
      },
      pong: function (received) { if (received) clearTimeout(pongTimer); },
    },
  });

  function subscribe(what, query, next) {
    client.subscribe({ query: query }, {
      next: function (r) {
        if (r.errors) showProblem(what, r.errors);
        else if (r.data) next(r.data);
      },
      error: function (err) { showProblem(what, err); },
      complete: function () {},
    });
  }

  function loadPlans() {
    var asked = ++seq;
    fetch('/graphql', {
      method: 'POST',
      headers: Object.assign({ 'content-type': 'application/json' }, auth.headers()),
      body: JSON.stringify({ query: '{ plans(first: ' + MAX_PLANS + ') { nodes { ' + PLAN_FIELDS + ' } } }' }),
    })
      .then(function (r) {
        if (r.status === 401) auth.refused('The server refused the token');
        return r.json();
      })
      .then(function (r) {
        if (r.errors || !r.data) { showProblem('loading plans', r.errors || 'no data'); return; }
        // this answer replaces what came before it was asked for (the page may have missed updates
        // while disconnected), but not a plan pushed after that: the push is newer
        r.data.plans.nodes.forEach(function (p) {
          var known = plans.get(p.id);
          if (!known || known.seq < asked) plans.set(p.id, { plan: p, seq: asked });
        });
        solved('loading plans');
        showPlans();
        touched();
      })
      .catch(function (err) { showProblem('loading plans', err); });
  }

  subscribe('system status',
    'subscription { systemStatusUpdated { activeTests queuedTests completedTests workers counts { passed failed timedOut error cancelled } ' +
    'pools { name kind capacity ready busy unhealthy queuedTests } components { name healthy detail } } }',
    function (d) { showStatus(d.systemStatusUpdated); });
  subscribe('plan updates', 'subscription { planUpdated { ' + PLAN_FIELDS + ' } }', function (d) {
    plans.set(d.planUpdated.id, { plan: d.planUpdated, seq: ++seq });
    showPlans();
    touched();
  });
  subscribe('test updates', 'subscription { testUpdated { name status attempts plan { name } result { errorMessage } } }', function (d) {
    showTest(d.testUpdated);
  });
});
`;
