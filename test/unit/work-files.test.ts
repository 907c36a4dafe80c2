// Files and bundles of a plan (src/domain/work-files.ts, validatePlan, planDigest): the path rule, the
// decoding, the limits, how layers combine, and that the idempotency digest covers them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planDigest } from '../../src/domain/plan-digest';
import { validatePlan, type SubmitPlanInput, type ValidationLimits } from '../../src/domain/plan-input';
import { planIssues, PLAN_LIMITS } from '../../src/domain/plan-input.schema';
import { fileContentBytes, mergeFileLayers, relativePathProblem, toWorkFile, workFilesBytes, type WorkFile } from '../../src/domain/work-files';

const limits: ValidationLimits = { ...PLAN_LIMITS, maxFiles: 3, maxFileBytes: 8, maxFilesBytes: 12 };
const plan = (extra: Partial<SubmitPlanInput> = {}, testExtra: object = {}): SubmitPlanInput => ({ name: 'p', tests: [{ name: 't', type: 'UNIT', script: 'true', ...testExtra }], ...extra });
const problems = (p: SubmitPlanInput) => validatePlan(p, limits).map((x) => `${x.field}: ${x.message}`);

describe('relativePathProblem', () => {
  it('accepts relative paths, names with dots, spaces and any Unicode', () => {
    for (const p of ['a', 'a/b/c.txt', '.hidden', 'a..b', '...', 'x y', 'ünï/cödé', 'a/.b/c', `${'d/'.repeat(127)}f`]) assert.equal(relativePathProblem(p), null, p);
  });
  it('refuses every other path, saying why', () => {
    const cases: [string, RegExp][] = [
      ['', /must not be empty/],
      ['/etc/passwd', /must be relative to the working directory, not start with "\/"/],
      ['..', /must not contain "\.\."/],
      ['a/../../b', /must not contain "\.\."/],
      ['./a', /must not contain "\." as a part/],
      ['a//b', /empty part/],
      ['a/', /empty part/],
      ['a\0b', /must not contain NUL/],
      ['a\nb', /control characters/],
      ['a\u007fb', /control characters/],
      [`${'x'.repeat(256)}`, /a part longer than 255 bytes/],
      [`${'é'.repeat(128)}`, /a part longer than 255 bytes/], // 256 bytes in UTF-8
      [`${'d/'.repeat(128)}f`, /more than 128 directories deep/],
      [`${'abcd/'.repeat(820)}`, /longer than 4096 bytes/],
    ];
    for (const [p, why] of cases) assert.match(relativePathProblem(p) ?? 'accepted', why, JSON.stringify(p.slice(0, 40)));
  });
});

describe('files of a plan and of a test', () => {
  it('decodes utf8 and base64 and counts the decoded bytes', () => {
    assert.deepEqual(fileContentBytes({ path: 'a', content: 'héllo' }), { bytes: 6 });
    assert.deepEqual(fileContentBytes({ path: 'a', content: 'AAEC', encoding: 'base64' }), { bytes: 3 });
    assert.deepEqual(fileContentBytes({ path: 'a', content: 'AA==', encoding: 'base64' }), { bytes: 1 });
    assert.deepEqual(fileContentBytes({ path: 'a', content: '', encoding: 'base64' }), { bytes: 0 });
    for (const bad of ['AAE', 'AA=A', 'A\nAA', '****']) assert.ok('problem' in fileContentBytes({ path: 'a', content: bad, encoding: 'base64' }), bad);
    const stored = toWorkFile({ path: 'x', content: 'é', executable: true });
    assert.deepEqual(stored, { path: 'x', base64: Buffer.from('é').toString('base64'), executable: true });
    assert.equal(workFilesBytes([stored, toWorkFile({ path: 'y', content: 'AAEC', encoding: 'base64' })]), 5);
  });

  it('names each problem with its field, in the plan and in a test', () => {
    assert.deepEqual(problems(plan({ files: [{ path: 'ok', content: '12345678' }] })), []);
    assert.deepEqual(problems(plan({ files: [{ path: '../x', content: '' }, { path: 'b', content: '123456789' }, { path: 'b', content: 'x', encoding: 'hex' }] })), [
      'files[0].path: must not contain ".."',
      'files[1].content: is 9 bytes, more than 8',
      'files[2].path: "b" is given twice (also files[1])',
      'files[2].encoding: must be "utf8" or "base64" (got "hex")',
    ]);
    const many = Array.from({ length: 4 }, (_, i) => ({ path: `f${i}`, content: '1234' }));
    assert.deepEqual(problems(plan({}, { files: many })), ['tests[0].files: holds 4 files, more than 3', 'tests[0].files: hold 16 bytes together, more than 12']);
    assert.deepEqual(problems(plan({ bundle: 'sha256:ABC' })), ['bundle: must be the id of an uploaded bundle, "sha256:" and 64 hex digits as POST /bundles answers (got "sha256:ABC")']);
    assert.deepEqual(problems(plan({ bundle: `sha256:${'a'.repeat(64)}` })), []);
  });

  it('the CLI check agrees: the shape of FileInput, then the same rules', () => {
    const file = { path: 'a', content: 'x', encoding: 'utf8', executable: true };
    assert.deepEqual(planIssues(plan({ files: [file] }, { files: [file] }), PLAN_LIMITS), []);
    assert.deepEqual(
      planIssues(plan({ files: [{ path: 'a', content: 'x', mode: 755 } as never] }), PLAN_LIMITS).map((i) => `${i.path.join('.')}: ${i.message}`),
      ['files.0.mode: is not a field of this input'],
    );
    assert.deepEqual(
      planIssues(plan({ files: [{ path: 'a', content: 'x', executable: 'yes' } as never] }), PLAN_LIMITS).map((i) => `${i.path.join('.')}: ${i.message}`),
      ['files.0.executable: must be true or false, not a string'],
    );
  });
});

describe('mergeFileLayers: a later layer wins', () => {
  const f = (path: string, text: string): WorkFile => ({ path, base64: Buffer.from(text).toString('base64'), executable: false });
  const show = (files: WorkFile[]) => files.map((x) => `${x.path}=${Buffer.from(x.base64, 'base64').toString()}`);

  it('replaces a path given again, keeps the rest', () => {
    assert.deepEqual(show(mergeFileLayers([[f('a', 'plan'), f('b', 'plan')], [f('a', 'test')]])), ['b=plan', 'a=test']);
  });
  it('a file where an earlier one needs a directory, and the other way round', () => {
    assert.deepEqual(show(mergeFileLayers([[f('x', 'file'), f('keep', '1')], [f('x/y', 'below')]])), ['keep=1', 'x/y=below']);
    assert.deepEqual(show(mergeFileLayers([[f('d/a', '1'), f('d/b/c', '2'), f('dd', '3')], [f('d', 'file')]])), ['dd=3', 'd=file']);
  });
});

describe('planDigest covers the bundle and the files', () => {
  it('changes with the bundle, a file of the plan or of a test, and its encoding or mode', () => {
    const base = plan({ bundle: `sha256:${'a'.repeat(64)}`, files: [{ path: 'a', content: 'x' }] }, { files: [{ path: 'b', content: 'y' }] });
    const digest = planDigest(base);
    assert.equal(planDigest(structuredClone(base)), digest);
    const variants: SubmitPlanInput[] = [
      { ...base, bundle: `sha256:${'b'.repeat(64)}` },
      { ...base, bundle: null },
      { ...base, files: [{ path: 'a', content: 'z' }] },
      { ...base, files: [{ path: 'a', content: 'x', executable: true }] },
      { ...base, files: [{ path: 'A', content: 'x' }] },
      { ...base, tests: [{ ...base.tests[0], files: [{ path: 'b', content: 'eQ==', encoding: 'base64' }] }] },
      { ...base, tests: [{ ...base.tests[0], files: [] }] },
    ];
    for (const v of variants) assert.notEqual(planDigest(v), digest, JSON.stringify(v));
  });
});
