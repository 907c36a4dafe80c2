// JUnit XML of a finished plan: the format every CI system reads.

export interface JUnitTest {
  name: string;
  status: string;
  durationMs: number | null;
  stdout: string;
  stderr: string;
  errorMessage: string | null;
}

const escape = (s: string) =>
  s
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');

export function junitXml(planName: string, tests: JUnitTest[]): string {
  const failures = tests.filter((t) => t.status === 'FAILED' || t.status === 'TIMED_OUT').length;
  const errors = tests.filter((t) => t.status === 'ERROR').length;
  const skipped = tests.filter((t) => t.status === 'CANCELLED').length;
  const seconds = (ms: number | null) => ((ms ?? 0) / 1000).toFixed(3);
  const total = tests.reduce((s, t) => s + (t.durationMs ?? 0), 0);
  const cases = tests.map((t) => {
    const body: string[] = [];
    const message = escape(t.errorMessage ?? t.status);
    if (t.status === 'FAILED' || t.status === 'TIMED_OUT') body.push(`      <failure message="${message}" type="${t.status}"/>`);
    if (t.status === 'ERROR') body.push(`      <error message="${message}" type="ERROR"/>`);
    if (t.status === 'CANCELLED') body.push(`      <skipped message="cancelled"/>`);
    if (t.stdout) body.push(`      <system-out>${escape(t.stdout)}</system-out>`);
    if (t.stderr) body.push(`      <system-err>${escape(t.stderr)}</system-err>`);
    const open = `    <testcase classname="${escape(planName)}" name="${escape(t.name)}" time="${seconds(t.durationMs)}"`;
    return body.length ? `${open}>\n${body.join('\n')}\n    </testcase>` : `${open}/>`;
  });
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="${escape(planName)}" tests="${tests.length}" failures="${failures}" errors="${errors}" skipped="${skipped}" time="${seconds(total)}">`,
    `  <testsuite name="${escape(planName)}" tests="${tests.length}" failures="${failures}" errors="${errors}" skipped="${skipped}" time="${seconds(total)}">`,
    ...cases,
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n');
}
