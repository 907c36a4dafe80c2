// The pages' own scripts are JavaScript as written: each parses (a raw newline inside a string literal,
// the cause of GraphiQL's "Invalid or unexpected token", does not). The browser tests run them for real.
import assert from 'node:assert/strict';
import { Script } from 'node:vm';
import { describe, it } from 'node:test';
import { DASHBOARD_SCRIPT } from '../../src/web/dashboard.script';
import { GRAPHIQL_SCRIPT } from '../../src/web/graphiql.script';
import { AUTH_SCRIPT } from '../../src/web/auth.script';

describe('page scripts', () => {
  for (const [name, source] of Object.entries({ 'dashboard.js': DASHBOARD_SCRIPT, 'graphiql-page.js': GRAPHIQL_SCRIPT })) {
    it(`${name} parses`, () => {
      assert.doesNotThrow(() => new Script(source, { filename: name }));
      assert.match(source, /join\('\\n'\)/, 'the newline of a joined string stays an escape');
    });
  }
  it('auth.js parses', () => assert.doesNotThrow(() => new Script(AUTH_SCRIPT, { filename: 'auth.js' })));
});
