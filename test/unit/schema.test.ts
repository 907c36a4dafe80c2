// schema.graphql is generated from the type-graphql classes and committed: it must be current, and it
// must hold the whole client contract.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { schemaSdl } from '../../src/api/schema';

const root = resolve(__dirname, '../../..');

describe('schema.graphql', () => {
  it('is what the code generates (run `npm run schema` after changing a type)', async () => {
    const committed = readFileSync(join(root, 'schema.graphql'), 'utf8');
    assert.equal(committed, await schemaSdl(), 'schema.graphql is stale: run `npm run schema` and commit it');
  });

  it('holds the whole API contract (../shared/tools/contract-check.mjs)', (t) => {
    const check = resolve(root, '../shared/tools/contract-check.mjs');
    if (!existsSync(check)) return t.skip(`${check} is not beside this checkout`);
    const out = execFileSync(process.execPath, [check, 'schema.graphql'], { cwd: root, encoding: 'utf8' });
    assert.match(out, /schema holds the whole contract/);
  });
});
