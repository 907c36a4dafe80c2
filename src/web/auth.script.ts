// The token of the pages (AUTH=on), served as /graphiql/assets/auth.js and loaded before each page's
// own script. The page says whether authentication is on (<meta name="orchestrator-auth">); when it is,
// the token is asked for in a small form, checked with `{ viewer { name role } }`, and kept in the
// tab's sessionStorage (gone when the tab closes; never in localStorage or a cookie, so no other site
// can make the browser send it). Text is written with textContent only.
export const AUTH_SCRIPT = String.raw`'use strict';
(function () {
  var KEY = 'orchestrator-token';
  var meta = document.querySelector('meta[name="orchestrator-auth"]');
  var needed = !!meta && meta.getAttribute('content') === 'on';
  var bearer = function () {
    var t = needed ? sessionStorage.getItem(KEY) : null;
    return t ? 'Bearer ' + t : null;
  };

  function check(token) {
    return fetch('/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer ' + token },
      body: JSON.stringify({ query: '{ viewer { name role } }' }),
    }).then(function (r) {
      return r.json().then(function (body) {
        if (r.status === 401 || !body.data || !body.data.viewer) throw new Error('the token was refused: ' + ((body.errors && body.errors[0] && body.errors[0].message) || ('HTTP ' + r.status)));
        return body.data.viewer;
      });
    });
  }

  function ask(message, done) {
    var old = document.getElementById('token-form');
    if (old) old.remove();
    var form = document.createElement('form');
    form.id = 'token-form';
    form.setAttribute('role', 'dialog');
    form.style.cssText = 'position:fixed;inset:0;z-index:1000;display:flex;flex-direction:column;gap:10px;align-items:center;justify-content:center;background:#1d2330ee;color:#fff;font:14px system-ui,sans-serif';
    var title = document.createElement('strong');
    title.textContent = 'This orchestrator needs a token';
    var text = document.createElement('p');
    text.id = 'token-message';
    text.textContent = message || 'Paste an API token (orchestrator token create makes one). It is kept in this tab only.';
    var input = document.createElement('input');
    input.id = 'token-input';
    input.type = 'password';
    input.autocomplete = 'off';
    input.placeholder = 'orch_…';
    input.style.cssText = 'width:420px;padding:6px;font:13px monospace';
    var button = document.createElement('button');
    button.type = 'submit';
    button.textContent = 'Use this token';
    form.append(title, text, input, button);
    form.addEventListener('submit', function (e) {
      e.preventDefault();
      var token = input.value.trim();
      if (!token) return;
      button.disabled = true;
      check(token).then(function (viewer) {
        sessionStorage.setItem(KEY, token);
        form.remove();
        done(viewer);
      }, function (err) {
        button.disabled = false;
        text.textContent = err.message;
      });
    });
    document.body.append(form);
    input.focus();
  }

  window.orchestratorAuth = {
    needed: needed,
    headers: function () { var b = bearer(); return b ? { authorization: b } : {}; },
    connectionParams: function () { var b = bearer(); return b ? { authorization: b } : {}; },
    /** Runs start() once there is a token (at once when authentication is off or one is kept). */
    whenReady: function (start) {
      if (!needed || bearer()) start();
      else ask(null, function () { start(); });
    },
    /** The server refused the kept token (revoked): forget it, ask again, then reload the page. */
    refused: function (why) {
      sessionStorage.removeItem(KEY);
      ask((why || 'The token was refused') + ': enter another one.', function () { location.reload(); });
    },
  };
})();
`;
