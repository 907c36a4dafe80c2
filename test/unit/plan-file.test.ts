// Plan files as users write them (src/cli/plan-file.ts, src/cli/json-syntax.ts): JSON or YAML, every
// problem one line "FILE:LINE: FIELD: MESSAGE", and hostile files refused without being read.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { findJsonSyntaxError } from '../../src/cli/json-syntax';
import { PlanFileError, readPlanFile } from '../../src/cli/plan-file';
import { validatePlan } from '../../src/domain/plan-input';
import { PLAN_LIMITS } from '../../src/domain/plan-input.schema';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'orch-planfile-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, content: string | Buffer): string {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
}

/** The lines readPlanFile refuses the file with, the directory taken out. */
function problems(path: string, maxBytes?: number): string[] {
  try {
    readPlanFile(path, PLAN_LIMITS, maxBytes);
  } catch (e) {
    if (!(e instanceof PlanFileError)) throw e;
    return e.lines.map((l) => l.split(`${dir}/`).join(''));
  }
  assert.fail(`${path} was accepted`);
}

const YAML_PLAN = `# a plan as a CI user writes it
name: nightly
priority: 5
tests:
  - name: unit
    type: UNIT
    script: npm test
  - name: lint
    type: UNIT
    script: npm run lint
  - name: e2e
    type: INTEGRATION
    script: |
      ./run-e2e.sh
    services:
      - name: db
        command: postgres
  - name: slow
    type: PERFORMANCE
    script: ./bench.sh
    timeoutSeconds: 100000
`;

describe('readPlanFile', () => {
  it('reads YAML and JSON to the same plan', () => {
    const fromYaml = readPlanFile(file('ok.yaml', YAML_PLAN.replace('100000', '600')), PLAN_LIMITS);
    const fromJson = readPlanFile(file('ok.json', JSON.stringify(fromYaml, null, 2)), PLAN_LIMITS);
    assert.deepEqual(fromJson, fromYaml);
    assert.equal((fromYaml as any).tests[2].script, './run-e2e.sh\n');
    // no extension: by content
    assert.deepEqual(readPlanFile(file('plan', JSON.stringify(fromYaml)), PLAN_LIMITS), fromYaml);
    assert.deepEqual(readPlanFile(file('plan2', YAML_PLAN.replace('100000', '600')), PLAN_LIMITS), fromYaml);
    // anchors and merge keys, as CI files use them
    const merged = readPlanFile(file('merge.yml', 'name: m\ntests:\n  - &base\n    name: a\n    type: UNIT\n    script: "true"\n  - <<: *base\n    name: b\n'), PLAN_LIMITS);
    assert.deepEqual((merged as any).tests[1], { name: 'b', type: 'UNIT', script: 'true' });
    // a UTF-8 byte order mark is not part of the JSON
    assert.deepEqual(readPlanFile(file('bom.json', `\ufeff${JSON.stringify(fromYaml)}`), PLAN_LIMITS), fromYaml);
  });

  it('names the file, the line and the field of a rule the server would refuse', () => {
    assert.deepEqual(problems(file('plan.yaml', YAML_PLAN)), ['plan.yaml:21: tests[3].timeoutSeconds: must be an integer from 1 to 86400 (got 100000)']);
    const json = file('plan.json', JSON.stringify({ name: 'n', tests: [{ name: 'a', type: 'UNIT', script: 'true' }, { name: 'a', type: 'UNIT', script: 'true', env: [{ name: 'PATH', value: '/x' }] }] }, null, 2));
    assert.deepEqual(problems(json), [
      'plan.json:10: tests[1].name: repeats the name of tests[0]; names are unique within a plan',
      'plan.json:15: tests[1].env[0].name: PATH is set by the environment and cannot be overridden',
    ]);
  });

  it('names the line of a shape problem: a wrong type, an unknown field, a missing field, a wrong enum', () => {
    const yaml = ['name: n', 'tests:', '  - name: a', '    type: unit', '    script: 42', '    timeout: 5', '  - type: UNIT', '    script: "true"', '    requirements:', '      cpus: 1.5', ''].join('\n');
    assert.deepEqual(problems(file('shape.yaml', yaml)), [
      'shape.yaml:4: tests[0].type: must be one of UNIT, INTEGRATION, PERFORMANCE, SECURITY (got "unit")',
      'shape.yaml:5: tests[0].script: must be a string, not the integer 42 (put it in quotes)',
      'shape.yaml:6: tests[0].timeout: is not a field of this input',
      'shape.yaml:7: tests[1].name: is required',
      'shape.yaml:10: tests[1].requirements.cpus: must be an integer, not the number 1.5',
    ]);
    assert.deepEqual(problems(file('list.yaml', '- name: a\n')), ['list.yaml:1: the plan must be an object with "name" and "tests", not a list']);
    assert.deepEqual(problems(file('empty.yaml', '# nothing yet\n')), ['empty.yaml:1: the plan is empty']);
    assert.deepEqual(problems(file('none.yaml', 'name: n\ntests: []\n')), ['none.yaml:2: tests: must hold at least one test']);
  });

  it('counts what it does not show', () => {
    const tests = Array.from({ length: 30 }, (_, i) => ({ name: `t${i}`, type: 'UNIT', script: '' }));
    const lines = problems(file('many.json', JSON.stringify({ name: 'n', tests })));
    assert.equal(lines.length, 21);
    assert.equal(lines[0], 'many.json:1: tests[0].script: must not be empty');
    assert.equal(lines[20], 'many.json: and 10 more problems');
  });

  it('says where JSON and YAML stop being valid', () => {
    assert.deepEqual(problems(file('comma.json', '{\n  "name": "n",\n  "tests": [\n    {"name": "a", "type": "UNIT", "script": "true"},\n  ]\n}\n')), [
      'comma.json:5: not valid JSON: a "," before "]" (trailing commas are not JSON)',
    ]);
    assert.deepEqual(problems(file('nul.json', '{\n "name": "a\u0000b"}')), [
      'nul.json:2: not valid JSON: the control character U+0000 must be written as an escape (\\n, \\t, \\u0000) inside a string',
    ]);
    assert.deepEqual(problems(file('open.json', '{"name": "n",\n"tests": [')), ['open.json:2: not valid JSON: the file ends where a value is expected']);
    assert.deepEqual(problems(file('empty.json', '')), ['empty.json:1: not valid JSON: the file is empty']);
    assert.deepEqual(problems(file('bad.yaml', 'name: n\ntests: [\n  - a\n')), [
      'bad.yaml:3: not valid YAML: Block collections are not allowed within flow collections',
      'bad.yaml:4: not valid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]',
    ]);
    assert.deepEqual(problems(file('dup.yaml', 'name: n\nname: m\ntests: []\n')), ['dup.yaml:2: not valid YAML: Map keys must be unique']);
    assert.deepEqual(problems(file('two.yaml', 'name: n\n---\nname: m\n')), ['two.yaml:2: not valid YAML: a second document ("---"): a plan file holds one']);
    assert.deepEqual(problems(file('tag.yaml', 'name: !env NAME\ntests: []\n')), ['tag.yaml:1: not valid YAML: Unresolved tag: !env']);
  });

  it('keeps hostile files out: NUL bytes, nesting, alias bombs, cycles, binary, UTF-16', () => {
    // a NUL inside a YAML string reaches the server's own rule, in the server's words
    const [nul] = validatePlan({ name: 'n', tests: [{ name: 'a', type: 'UNIT', script: 'a\0b' }] }, PLAN_LIMITS);
    assert.equal(nul.field, 'tests[0].script');
    assert.deepEqual(problems(file('nul.yaml', 'name: n\ntests:\n  - name: a\n    type: UNIT\n    script: "a\\0b"\n')), [`nul.yaml:5: tests[0].script: ${nul.message}`]);
    assert.deepEqual(problems(file('deep.json', `{"name": "n", "tests": ${'['.repeat(100_000)}${']'.repeat(100_000)}}`)), ['deep.json:1: tests[0]: must be an object (a mapping of fields), not a list']);
    assert.deepEqual(problems(file('deep.yaml', `name: n\ntests: ${'['.repeat(20_000)}${']'.repeat(20_000)}\n`)).slice(0, 1), ['deep.yaml:2: not valid YAML: nested too deeply']);
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x]', 'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]', 'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]', 'd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]', ''].join('\n');
    assert.deepEqual(problems(file('bomb.yaml', bomb)), ['bomb.yaml: not a usable YAML document: Excessive alias count indicates a resource exhaustion attack']);
    assert.deepEqual(problems(file('cycle.yaml', 'name: n\ntests:\n  - name: a\n    type: UNIT\n    script: "true"\n    artifactPaths: &p [*p]\n')), [
      'cycle.yaml:6: tests[0].artifactPaths[0]: must be a string, not a list',
    ]);
    assert.deepEqual(problems(file('binary.json', Buffer.from([0x7b, 0x0a, 0xc3, 0x28, 0x7d]))), ['binary.json:2: the file is not UTF-8 text (binary data?)']);
    assert.deepEqual(problems(file('utf16.json', Buffer.from('\ufeff{}', 'utf16le'))), ['utf16.json:1: the file is UTF-16 text: save it as UTF-8']);
    assert.deepEqual(problems(file('proto.json', '{"name": "n", "tests": [{"name": "a", "type": "UNIT", "script": "true", "__proto__": {"x": 1}}]}')), [
      'proto.json:1: tests[0].__proto__: is not a field of this input',
    ]);
  });

  it('refuses a FIFO, a directory, a device, a missing file and a giant without reading them', () => {
    const fifo = join(dir, 'fifo.yaml');
    execFileSync('mkfifo', [fifo]);
    assert.deepEqual(problems(fifo), ['fifo.yaml: cannot read the plan: is not a regular file (a FIFO, device or socket)']);
    assert.deepEqual(problems(dir).map((l) => l.replace(dir, 'DIR')), ['DIR: cannot read the plan: is a directory']);
    assert.deepEqual(problems('/dev/zero'), ['/dev/zero: cannot read the plan: is not a regular file (a FIFO, device or socket)']);
    assert.deepEqual(problems(join(dir, 'missing.yaml')), ['missing.yaml: cannot read the plan: no such file']);
    const sparse = file('sparse.json', '');
    truncateSync(sparse, 300 * 1024 * 1024); // sparse: nothing is written, and nothing must be read
    assert.deepEqual(problems(sparse), ['sparse.json: cannot read the plan: is 300 MiB, more than the 256 MiB a plan may be']);
    assert.deepEqual(problems(file('small.json', '{"name": "n", "tests": []}'), 10), ['small.json: cannot read the plan: is 26 bytes, more than the 10 bytes a plan may be']);
  });

  it('prints a file name with control characters escaped, on one line', () => {
    assert.deepEqual(problems(join(dir, 'evil\n\u001b[31mname.yaml')), ['evil\\n\\u001b[31mname.yaml: cannot read the plan: no such file']);
  });
});

describe('findJsonSyntaxError', () => {
  const samples = [
    '{}', '[]', '0', '-0.5e+10', '"\\u00e9\\n"', '{"a": [1, 2, {"b": null}], "c": true}', ' \n[ ]\n',
    '', '{', '[1,]', '{"a":1,}', '{"a" 1}', '{a: 1}', "{'a': 1}", '[1 2]', '01', '1.', '-', '.5', '"abc', '"\\x"', '"\\u12"',
    '{"a":}', '[1]]', '[1] x', 'tru', 'nul', '{"a":1}{', '"a\tb"', '[\n1,\n2\n,]', '{"a":{"b":[1,{"c":}]}}',
  ];
  for (const s of samples) {
    it(`agrees with JSON.parse on ${JSON.stringify(s)}`, () => {
      let valid = true;
      try {
        JSON.parse(s);
      } catch {
        valid = false;
      }
      const err = findJsonSyntaxError(s);
      assert.equal(err === null, valid, JSON.stringify(err));
    });
  }
  it('points at the mistake', () => {
    assert.deepEqual(findJsonSyntaxError('{"a": 1,\n "b": }'), { offset: 15, message: '"}" cannot start a value' });
    assert.deepEqual(findJsonSyntaxError('[1 2]'), { offset: 3, message: 'expected "," or "]" here, not "2"' });
    assert.deepEqual(findJsonSyntaxError('{"a": "b\u001b"}'), { offset: 8, message: 'the control character U+001B must be written as an escape (\\n, \\t, \\u0000) inside a string' });
  });
  it('is not stopped by deep nesting', () => {
    assert.equal(findJsonSyntaxError('['.repeat(1_000_000) + ']'.repeat(1_000_000)), null);
    assert.equal(findJsonSyntaxError('['.repeat(1_000_000))?.message, 'the file ends where a value is expected');
  });
});
