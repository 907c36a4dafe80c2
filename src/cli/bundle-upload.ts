// `submit --bundle DIR|ARCHIVE` and a plan file's `bundle: PATH`: a directory is packed (a tar of
// everything below it, links kept as links, gzip-compressed, streamed), an archive (.tar, .tar.gz,
// .tgz, .tar.zst) is sent as it is, to POST /bundles; the id it answers goes into the plan. A bundle
// id ("sha256:…") is taken as it is, without an upload.

import { closeSync, constants as fsConstants, createReadStream, fstatSync, openSync, statSync } from 'node:fs';
import { pipeline, Readable } from 'node:stream';
import { createGzip } from 'node:zlib';
import { BUNDLE_ID } from '../domain/work-files';
import { PackError, packDirectory } from '../infra/tar/tar-writer';
import { authHeaders, CliError, networkCause, remaining, ROLE_HINT, TOKEN_HINT, type ClientOptions } from './api-client';
import { oneLine } from './one-line';

export interface UploadedBundle {
  id: string;
  sizeBytes: number;
  files: number;
}

/** Where a bundle comes from: an id, a directory to pack, or an archive file. */
export type BundleSource = { kind: 'id'; id: string } | { kind: 'directory'; path: string } | { kind: 'archive'; path: string };

/** What `text` names (`label` says where it was given, for the message: "--bundle", "plan.yaml: bundle"). */
export function bundleSource(text: string, path: string, label: string): BundleSource {
  if (BUNDLE_ID.test(text)) return { kind: 'id', id: text };
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CliError(`${label} ${oneLine(text, 200)}: ${code === 'ENOENT' ? 'no such file or directory' : oneLine((e as Error).message, 200)}`);
  }
  if (st.isDirectory()) return { kind: 'directory', path };
  if (st.isFile()) return { kind: 'archive', path };
  throw new CliError(`${label} ${oneLine(text, 200)}: neither a directory nor an archive file`);
}

/** The body of an archive file: a regular file, opened without waiting on a FIFO. */
function archiveBody(path: string): Readable {
  const fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    throw new CliError(`${oneLine(path, 200)}: not a regular file`);
  }
  return createReadStream('', { fd });
}

/** Uploads the bundle and returns what the server answered; a CliError (exit 2) for any failure. */
export async function uploadBundle(baseUrl: string, source: Exclude<BundleSource, { kind: 'id' }>, opts: ClientOptions): Promise<UploadedBundle> {
  const { timeoutSeconds } = opts;
  const what = `${source.kind === 'directory' ? 'the directory' : 'the archive'} ${oneLine(source.path, 200)}`;
  let packError: Error | null = null;
  const body =
    source.kind === 'directory'
      ? (pipeline(Readable.from(packDirectory(source.path)), createGzip({ level: 6 }), (err) => {
          if (err) packError = err; // the gzip stream is destroyed with it: the upload stops
        }) as unknown as Readable)
      : archiveBody(source.path);
  let res: Response;
  let text: string;
  try {
    res = await fetch(`${baseUrl}/bundles`, {
      method: 'POST',
      headers: { 'content-type': source.kind === 'directory' ? 'application/gzip' : 'application/octet-stream', accept: 'application/json', ...authHeaders(opts.token) },
      body: Readable.toWeb(body) as unknown as ReadableStream,
      duplex: 'half',
      signal: opts.stop ? AbortSignal.any([AbortSignal.timeout(remaining(opts.deadline)), opts.stop]) : AbortSignal.timeout(remaining(opts.deadline)),
    } as unknown as RequestInit);
    text = await res.text();
  } catch (e) {
    if (opts.stop?.aborted) throw new CliError(`interrupted by ${String(opts.stop.reason)} while uploading ${what}: nothing submitted`);
    const failed = packError as Error | null;
    if (failed) throw new CliError(`cannot pack ${what}: ${oneLine(failed instanceof PackError ? failed.message : failed.message, 300)}`);
    throw new CliError(`cannot upload ${what} to ${baseUrl}/bundles: ${networkCause(e, new URL(baseUrl).hostname, timeoutSeconds)}`);
  } finally {
    body.destroy();
  }
  let answer: { id?: unknown; sizeBytes?: unknown; files?: unknown; error?: unknown } | null = null;
  try {
    answer = JSON.parse(text);
  } catch {
    answer = null; // not JSON: said below with the status
  }
  if (res.status === 201 && typeof answer?.id === 'string' && BUNDLE_ID.test(answer.id)) {
    return { id: answer.id, sizeBytes: Number(answer.sizeBytes), files: Number(answer.files) };
  }
  if (res.status === 401 || res.status === 403)
    throw new CliError(`${baseUrl}/bundles refused the upload: HTTP ${res.status}${res.statusText ? ` ${oneLine(res.statusText, 60)}` : ''}${typeof answer?.error === 'string' ? `: ${oneLine(answer.error, 300)}` : ''} (${res.status === 403 ? ROLE_HINT : TOKEN_HINT})`);
  const why = typeof answer?.error === 'string' ? oneLine(answer.error, 300) : `HTTP ${res.status}${res.statusText ? ` ${oneLine(res.statusText, 60)}` : ''}, not an answer of POST /bundles`;
  throw new CliError(`${what} was refused as a bundle: ${why}`);
}
