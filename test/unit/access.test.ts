// The access policy (domain/access.ts): which role each root field needs, who may change a plan, what
// counts as a bearer token. Pure.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bearerSecret, hasRole, mayChangePlan, refusal, roleForField, tokenNameProblem, TOKEN_PATTERN } from '../../src/domain/access';

const caller = (role: 'VIEWER' | 'SUBMITTER' | 'ADMIN', tokenId = 't1') => ({ tokenId, name: `n-${role}`, role });

describe('access policy', () => {
  it('roles include the ones below them', () => {
    assert.ok(hasRole('ADMIN', 'SUBMITTER') && hasRole('SUBMITTER', 'VIEWER') && hasRole('VIEWER', 'VIEWER'));
    assert.ok(!hasRole('VIEWER', 'SUBMITTER') && !hasRole('SUBMITTER', 'ADMIN'));
  });

  it('a mutation not listed needs ADMIN; queries and subscriptions VIEWER but tokens', () => {
    assert.equal(roleForField('mutation', 'submitPlan'), 'SUBMITTER');
    assert.equal(roleForField('mutation', 'createToken'), 'ADMIN');
    assert.equal(roleForField('mutation', 'someNewMutation'), 'ADMIN');
    assert.equal(roleForField('mutation', 'constructor'), 'ADMIN', 'no prototype key counts as listed');
    assert.equal(roleForField('query', 'plans'), 'VIEWER');
    assert.equal(roleForField('query', 'tokens'), 'ADMIN');
    assert.equal(roleForField('subscription', 'testUpdated'), 'VIEWER');
  });

  it('refuses with a message naming the token, its role and what is needed; allows everything without a caller', () => {
    assert.equal(refusal(null, 'ADMIN', 'x'), null);
    assert.equal(refusal(caller('VIEWER'), 'SUBMITTER', 'mutation submitPlan'), 'token "n-VIEWER" has role VIEWER; mutation submitPlan needs SUBMITTER or ADMIN');
    assert.equal(refusal(caller('ADMIN'), 'ADMIN', 'tokens'), null);
  });

  it('a plan may be changed by its submitter or an ADMIN; a viewer never; a plan of nobody only by an ADMIN', () => {
    assert.ok(mayChangePlan(caller('SUBMITTER', 'a'), 'a'));
    assert.ok(!mayChangePlan(caller('SUBMITTER', 'a'), 'b'));
    assert.ok(!mayChangePlan(caller('SUBMITTER', 'a'), null));
    assert.ok(!mayChangePlan(caller('VIEWER', 'a'), 'a'));
    assert.ok(mayChangePlan(caller('ADMIN', 'x'), 'b'));
    assert.ok(mayChangePlan(null, 'b'));
  });

  it('reads a bearer token and nothing else', () => {
    const t = `orch_${'a'.repeat(43)}`;
    assert.equal(bearerSecret(`Bearer ${t}`), t);
    assert.equal(bearerSecret(`bearer  ${t} `), t);
    for (const bad of [undefined, 42, ['Bearer x'], '', 'Bearer', 'Bearer ', `Basic ${t}`, `Bearer ${t} extra`, `Bearer ${t}\0`, `Bearer ${'x'.repeat(600)}`]) {
      assert.equal(bearerSecret(bad), null, JSON.stringify(bad));
    }
    assert.ok(TOKEN_PATTERN.test(t) && !TOKEN_PATTERN.test(`${t}a`) && !TOKEN_PATTERN.test(t.replace('orch_', 'orc_')));
  });

  it('checks token names', () => {
    assert.equal(tokenNameProblem('ci-main.runner@x_1'), null);
    for (const bad of ['', ' x', 'a b', '-x', 'x'.repeat(65), 'é', 'a\0', 42]) assert.ok(tokenNameProblem(bad), JSON.stringify(bad));
  });
});
