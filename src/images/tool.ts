// Running the build's tools (debootstrap, skopeo, umoci, bwrap, cp, du): umask 022 whatever the
// orchestrator's (it runs with 077; an image is read by the sandbox user), an explicit environment,
// every output line seen by the caller, the meaningful ones kept for the error message, and an
// AbortSignal that kills the tool's whole process group.

import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { createInterface } from 'node:readline';

/** What the builder reports to: a pino logger fits (the container driver's DriverLogger too). */
export interface ImageLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** A build step that failed: `message` is one line naming the step and what the tool said. */
export class ImageBuildError extends Error {
  override readonly name = 'ImageBuildError';
  constructor(
    readonly image: string,
    readonly step: string,
    detail: string,
  ) {
    super(`image "${image}": ${step} failed: ${oneLine(detail)}`);
  }
}

/** One line, at most `max` characters, no control characters. */
export function oneLine(text: string, max = 500): string {
  // eslint-disable-next-line no-control-regex
  const flat = text.replace(/[\u0000-\u001f\u007f]+/g, ' ').replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

export interface ToolRun {
  command: string;
  args: string[];
  env: Record<string, string>;
  cwd?: string;
  /** Every line of stdout and stderr, as it comes. */
  onLine?(line: string, stream: 'stdout' | 'stderr'): void;
  signal?: AbortSignal;
  /** Text written to the tool's stdin (then closed); default: no stdin. */
  input?: string;
}

export interface ToolResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The last lines (both streams). */
  tail: string[];
  /** Lines that read as errors: apt's and debootstrap's "E: …", or "error"/"fatal" lines. */
  errors: string[];
  stdout: string;
}

const TAIL_LINES = 30;
const MAX_STDOUT = 4 * 1024 * 1024;
const ERROR_LINE = /^(E: |W: Failed|Error: |error: |ERROR|FATA\[|fatal: |FATAL|[^ ]*: (cannot|can't) |.*\blevel=(error|fatal)\b)/;

/** Runs a tool to its end (never throws for a non-zero exit: the caller decides what it means). */
export function runTool(run: ToolRun): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    if (run.signal?.aborted) return reject(abortError(run.signal));
    // `umask 022` then exec: the tool and everything it starts create world-readable files.
    const child = spawn('/bin/sh', ['-c', 'umask 022 && exec "$@"', 'sh', run.command, ...run.args], {
      env: run.env,
      cwd: run.cwd ?? '/',
      stdio: [run.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      detached: true, // its own process group: an abort kills everything it started
    });
    const tail: string[] = [];
    const errors: string[] = [];
    let stdout = '';
    const onLine = (stream: 'stdout' | 'stderr') => (line: string) => {
      if (stream === 'stdout' && stdout.length < MAX_STDOUT) stdout += `${line}\n`;
      tail.push(line);
      if (tail.length > TAIL_LINES) tail.shift();
      if (ERROR_LINE.test(line) && errors.length < 20) errors.push(line);
      run.onLine?.(line, stream);
    };
    createInterface({ input: child.stdout! }).on('line', onLine('stdout'));
    createInterface({ input: child.stderr! }).on('line', onLine('stderr'));
    if (run.input !== undefined) child.stdin!.end(run.input);
    const kill = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err; // gone already: nothing to kill
      }
    };
    run.signal?.addEventListener('abort', kill, { once: true });
    child.once('error', (err) => {
      run.signal?.removeEventListener('abort', kill);
      reject(err);
    });
    child.once('close', (code, signal) => {
      run.signal?.removeEventListener('abort', kill);
      if (run.signal?.aborted) return reject(abortError(run.signal));
      resolve({ code, signal, tail, errors, stdout });
    });
  });
}

export function abortError(signal: AbortSignal): Error {
  const reason = signal.reason as unknown;
  if (reason instanceof Error) return reason;
  return Object.assign(new Error(`aborted${reason ? `: ${String(reason)}` : ''}`), { name: 'AbortError' });
}

/** A line as people read it: logrus lines (skopeo, umoci: `time=… level=fatal msg="…"`) give their message. */
export function readableLine(line: string): string {
  const m = /\blevel=(?:fatal|error|warning)\s+msg="((?:[^"\\]|\\.)*)"/.exec(line);
  if (!m) return line.trim();
  try {
    return (JSON.parse(`"${m[1]}"`) as string).trim();
  } catch {
    return m[1].trim(); // not JSON escapes after all: the text as it is
  }
}

/** What went wrong, in the tool's words: its error lines, else its last lines, else its exit status. */
export function failureText(tool: string, r: ToolResult): string {
  const why = r.signal ? `killed by ${r.signal}` : `exit ${r.code}`;
  const said = r.errors.length > 0 ? r.errors.slice(-3) : r.tail.filter((l) => l.trim() !== '').slice(-2);
  return said.length > 0 ? `${said.map(readableLine).join('; ')} (${tool} ${why})` : `${tool} ${why}`;
}

/** Runs a tool and throws an ImageBuildError for the step unless it exits 0. */
export async function runStep(image: string, step: string, run: ToolRun, label?: string): Promise<ToolResult> {
  let r: ToolResult;
  try {
    r = await runTool(run);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new ImageBuildError(image, step, `${run.command} not found`);
    throw err;
  }
  const tool = label ?? run.command.split('/').pop()!;
  if (r.code === 127 && r.errors.length === 0) throw new ImageBuildError(image, step, `${tool} not found (${r.tail.slice(-1)[0] ?? 'exit 127'})`);
  if (r.code !== 0) throw new ImageBuildError(image, step, failureText(tool, r));
  return r;
}

/** Debian packages of the tools a build may need, for "not found" messages. */
export const TOOL_PACKAGES: Record<string, string> = {
  debootstrap: 'debootstrap',
  skopeo: 'skopeo',
  umoci: 'umoci',
  bwrap: 'bubblewrap',
};

/** The absolute path of `tool` on `pathVar`, or null. */
export async function findTool(tool: string, pathVar: string): Promise<string | null> {
  for (const dir of pathVar.split(':').filter((d) => d.startsWith('/'))) {
    const candidate = `${dir}/${tool}`;
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // the expected answer for most directories: not there
    }
  }
  return null;
}
