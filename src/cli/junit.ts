// JUnit XML of a finished plan: the format every CI system reads (GitLab's `reports: junit`, GitHub
// actions such as action-junit-report, Jenkins). One <testsuite> for the plan, one <testcase> per test:
// FAILED and TIMED_OUT are <failure>s, ERROR (an infrastructure fault, retries spent) an <error>,
// CANCELLED (and a test that never ended) <skipped>; stdout/stderr in <system-out>/<system-err>.
//
// Everything in it comes from outside (test names, output): text is escaped, and what XML 1.0 cannot
// hold at all (NUL and the other C0 controls but tab/LF/CR, lone surrogates, U+FFFE/U+FFFF) is written
// as a visible "\u0000"-style escape, so the report stays well-formed whatever a test printed.

export interface JUnitTest {
  name: string;
  status: string;
  durationMs: number | null;
  stdout: string;
  stderr: string;
  errorMessage: string | null;
  /** ISO date-time the test started, if it ran */
  startedAt?: string | null;
}

const NOT_XML = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

const visible = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;

/** Text content: & < > escaped (so "]]>" is harmless), CR as a reference (a parser would drop it before LF), what XML cannot hold made visible. */
export function xmlText(s: string): string {
  return s.replace(NOT_XML, visible).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\r/g, '&#13;');
}

/** An attribute value: as text, plus quotes, and tab/LF/CR as references (a parser would turn them into spaces). */
export function xmlAttr(s: string): string {
  return xmlText(s).replace(/"/g, '&quot;').replace(/\t/g, '&#9;').replace(/\n/g, '&#10;');
}

const FAILURES = new Set(['FAILED', 'TIMED_OUT']);
const seconds = (ms: number | null) => (Math.max(0, ms ?? 0) / 1000).toFixed(3);

function testcase(classname: string, t: JUnitTest): string {
  const body: string[] = [];
  const message = xmlAttr(t.errorMessage ?? t.status);
  if (FAILURES.has(t.status)) body.push(`      <failure message="${message}" type="${xmlAttr(t.status)}">${xmlText(t.errorMessage ?? t.status)}</failure>`);
  else if (t.status === 'ERROR') body.push(`      <error message="${message}" type="ERROR">${xmlText(t.errorMessage ?? 'ERROR')}</error>`);
  else if (t.status === 'CANCELLED') body.push(`      <skipped message="cancelled"/>`);
  else if (t.status !== 'PASSED') body.push(`      <skipped message="${xmlAttr(`not finished (${t.status})`)}"/>`);
  if (t.stdout) body.push(`      <system-out>${xmlText(t.stdout)}</system-out>`);
  if (t.stderr) body.push(`      <system-err>${xmlText(t.stderr)}</system-err>`);
  const open = `    <testcase classname="${xmlAttr(classname)}" name="${xmlAttr(t.name)}" time="${seconds(t.durationMs)}"`;
  return body.length ? `${open}>\n${body.join('\n')}\n    </testcase>` : `${open}/>`;
}

export function junitXml(planName: string, tests: JUnitTest[], opts: { planId?: string; timestamp?: string } = {}): string {
  const failures = tests.filter((t) => FAILURES.has(t.status)).length;
  const errors = tests.filter((t) => t.status === 'ERROR').length;
  const skipped = tests.filter((t) => t.status !== 'PASSED' && !FAILURES.has(t.status) && t.status !== 'ERROR').length;
  const total = tests.reduce((s, t) => s + Math.max(0, t.durationMs ?? 0), 0);
  const counts = `tests="${tests.length}" failures="${failures}" errors="${errors}" skipped="${skipped}" time="${seconds(total)}"`;
  const extra = `${opts.planId ? ` id="${xmlAttr(opts.planId)}"` : ''}${opts.timestamp ? ` timestamp="${xmlAttr(opts.timestamp)}"` : ''}`;
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="${xmlAttr(planName)}" ${counts}>`,
    `  <testsuite name="${xmlAttr(planName)}" ${counts}${extra}>`,
    ...tests.map((t) => testcase(planName, t)),
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n');
}
