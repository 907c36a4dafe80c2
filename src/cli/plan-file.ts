// Reading a plan file (JSON or YAML) and checking it before anything is sent: every problem is one line
// "FILE:LINE: FIELD: MESSAGE", with the line found from the field's path in the parsed document.
//
// JSON is parsed by JSON.parse (fast: a 10,000-test plan of 6 MB in ~40 ms); only when something is wrong
// is it parsed again with the `yaml` package (JSON is YAML) for the lines. YAML is parsed with `yaml`
// keeping the positions (the same plan as YAML takes ~5 s). The file is checked to be a regular file of
// at most MAX_PLAN_FILE_BYTES before it is read: a FIFO, a device or a sparse giant is refused unread.

import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { fieldName, planIssues, type PlanIssue } from '../domain/plan-input.schema';
import type { ValidationLimits } from '../domain/plan-input';
import { BUNDLE_ID } from '../domain/work-files';
import { findJsonSyntaxError } from './json-syntax';
import { oneLine } from './one-line';

/** The default request body limit of the API (MAX_REQUEST_BYTES): a bigger plan could not be sent. */
export const MAX_PLAN_FILE_BYTES = 256 * 1024 * 1024;
/** Problems printed; the rest are counted. */
const MAX_SHOWN = 20;

/** A plan file that cannot be sent; `lines` are what the user reads, one problem each. */
export class PlanFileError extends Error {
  constructor(readonly lines: string[]) {
    super(lines.join('\n'));
  }
}

type Format = 'json' | 'yaml';

const FILE_ERRORS: Record<string, string> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EISDIR: 'is a directory',
  ENOTDIR: 'a part of the path is not a directory',
  ELOOP: 'too many levels of symbolic links',
  ENAMETOOLONG: 'the name is too long',
  EMFILE: 'too many open files',
};

const size = (n: number) => (n >= 1024 * 1024 ? `${Math.ceil(n / 1024 / 1024)} MiB` : `${n} bytes`);

function readText(file: string, maxBytes: number): string {
  const fail = (why: string) => new PlanFileError([`${oneLine(file)}: cannot read the plan: ${why}`]);
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below)
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? '';
    throw fail(FILE_ERRORS[code] ?? oneLine((e as Error).message));
  }
  let bytes: Buffer;
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw fail('is a directory');
    if (!st.isFile()) throw fail('is not a regular file (a FIFO, device or socket)');
    if (st.size > maxBytes) throw fail(`is ${size(st.size)}, more than the ${size(maxBytes)} a plan may be`);
    bytes = readFileSync(fd);
  } catch (e) {
    if (e instanceof PlanFileError) throw e;
    const code = (e as NodeJS.ErrnoException).code ?? '';
    throw fail(FILE_ERRORS[code] ?? oneLine((e as Error).message));
  } finally {
    closeSync(fd);
  }
  if (bytes.length > maxBytes) throw fail(`is more than the ${size(maxBytes)} a plan may be`); // it grew while read
  if ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff))
    throw new PlanFileError([`${oneLine(file)}:1: the file is UTF-16 text: save it as UTF-8`]);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    // the decoder says only that it failed: the first replacement character is (about) where
    const lenient = bytes.toString('utf8');
    throw new PlanFileError([`${oneLine(file)}:${lineAt(lenient, lenient.indexOf('\ufffd'))}: the file is not UTF-8 text (binary data?)`]);
  }
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** 1-based line of an offset. */
function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) line++;
  return line;
}

function formatOf(file: string, text: string): Format {
  const ext = extname(file).toLowerCase();
  if (ext === '.json') return 'json';
  if (ext === '.yaml' || ext === '.yml') return 'yaml';
  return /^\s*[[{]/.test(text) ? 'json' : 'yaml';
}

function parseYaml(text: string) {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, merge: true, uniqueKeys: true });
  return { doc, lineCounter };
}

function yamlProblemText(message: string, code?: string): string {
  if (code === 'MULTIPLE_DOCS') return 'a second document ("---"): a plan file holds one';
  return /call stack/i.test(message) ? 'nested too deeply' : oneLine(message, 200);
}

/** The line of the deepest part of `path` present in the document (the key's line for a field). */
function lineOfPath(doc: Document, lc: LineCounter, path: readonly (string | number)[]): number {
  let node: unknown = doc.contents;
  const lineOf = (n: unknown) => (n && typeof n === 'object' && 'range' in n && Array.isArray((n as Node).range) ? lc.linePos((n as Node).range![0]).line : null);
  let line = lineOf(node) ?? 1;
  for (const key of path) {
    if (isAlias(node)) break; // the problem is in what the alias stands for: point at its use
    if (isMap(node)) {
      // the last pair of that key: JSON.parse and the yaml package keep the last of duplicate keys
      let found: (typeof node.items)[number] | undefined;
      for (let i = node.items.length - 1; i >= 0 && !found; i--) {
        const k = node.items[i].key;
        if ((isScalar(k) ? String(k.value) : String(k)) === String(key)) found = node.items[i];
      }
      if (!found) break;
      line = lineOf(found.key) ?? line;
      node = found.value;
    } else if (isSeq(node) && typeof key === 'number' && node.items[key] !== undefined) {
      node = node.items[key];
      line = lineOf(node) ?? line;
    } else break;
  }
  return line;
}

function describeIssue(issue: PlanIssue, value: unknown): string {
  if (issue.path.length === 0 && (value === null || value === undefined)) return 'the plan is empty';
  if (issue.path.length === 0) return `the plan ${issue.message.replace(/^must be an object \(a mapping of fields\)/, 'must be an object with "name" and "tests"')}`;
  return `${oneLine(fieldName(issue.path), 200)}: ${issue.message}`;
}

/**
 * Reads and checks a plan file: returns the plan to send, or throws a PlanFileError whose lines name the
 * file, the line and the field of each problem. `bundlePath`: its `bundle` may also be a path (of a
 * directory or an archive, for the caller to upload), not only the id of an uploaded bundle.
 */
export function readPlanFile(file: string, limits: ValidationLimits, maxBytes = MAX_PLAN_FILE_BYTES, o: { bundlePath?: boolean } = {}): unknown {
  const name = oneLine(file);
  const text = readText(file, maxBytes);
  const format = formatOf(file, text);
  let value: unknown;
  let positions: { doc: Document; lineCounter: LineCounter } | null = null;
  if (format === 'json') {
    try {
      value = JSON.parse(text);
    } catch (e) {
      const at = findJsonSyntaxError(text);
      if (at) throw new PlanFileError([`${name}:${lineAt(text, at.offset)}: not valid JSON: ${at.message}`]);
      throw new PlanFileError([`${name}: not valid JSON: ${oneLine((e as Error).message, 200)}`]);
    }
  } else {
    positions = parseYaml(text);
    const { doc, lineCounter } = positions;
    const errors = [...doc.errors, ...doc.warnings];
    if (errors.length) {
      const seen = new Set<string>();
      const lines = errors
        .map((e) => `${name}:${lineCounter.linePos(e.pos[0]).line}: not valid YAML: ${yamlProblemText(e.message, e.code)}`)
        .filter((l) => !seen.has(l) && seen.add(l));
      throw new PlanFileError(lines.length > 5 ? [...lines.slice(0, 5), `${name}: and ${lines.length - 5} more YAML errors`] : lines);
    }
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (e) {
      throw new PlanFileError([`${name}: not a usable YAML document: ${yamlProblemText((e as Error).message)}`]);
    }
  }

  const bundle = (value as { bundle?: unknown } | null)?.bundle;
  const isPath = o.bundlePath && typeof bundle === 'string' && !BUNDLE_ID.test(bundle);
  const issues = planIssues(isPath ? { ...(value as object), bundle: undefined } : value, limits);
  if (issues.length === 0) return value;
  positions ??= parseYaml(text);
  const shown = issues.slice(0, MAX_SHOWN).map((i) => `${name}:${lineOfPath(positions!.doc, positions!.lineCounter, i.path)}: ${describeIssue(i, value)}`);
  if (issues.length > MAX_SHOWN) shown.push(`${name}: and ${issues.length - MAX_SHOWN} more problems`);
  throw new PlanFileError(shown);
}
