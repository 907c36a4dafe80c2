import { Kind, type DocumentNode } from 'graphql';
import type { RequestHandler } from 'express';
import type { QueryLimits } from '../../config/api-security';
import { parseLimited } from './query-limits';

/**
 * The JSON body of POST /graphql, read with two limits (issue 6, item 8): MAX_BODY_BYTES (1 MiB) for
 * everything, MAX_REQUEST_BYTES (256 MiB) for a submitPlan mutation, whose plan of 10,000+ tests is tens
 * of MB. Which one applies is decided from the first PEEK_BYTES, before the rest is read: the body's
 * "query" member must be there (as `npm run submit`, curl and most clients send it: query before
 * variables) and hold one mutation whose fields are all submitPlan. A body that is then longer than
 * MAX_BODY_BYTES is checked again once parsed (a JSON object may repeat "query": the last one counts), so
 * only a submitPlan ever runs with a large body. Anything else is refused with 413 as soon as it passes
 * MAX_BODY_BYTES, without keeping the bytes.
 */
export const PEEK_BYTES = 64 * 1024;

export interface BodyLimits {
  maxBodyBytes: number;
  maxRequestBytes: number;
  query: QueryLimits;
}

export function isSubmitPlanOnly(doc: DocumentNode): boolean {
  if (doc.definitions.length !== 1) return false;
  const op = doc.definitions[0];
  if (op.kind !== Kind.OPERATION_DEFINITION || op.operation !== 'mutation') return false;
  return (
    op.selectionSet.selections.length > 0 &&
    op.selectionSet.selections.every((s) => s.kind === Kind.FIELD && (s.name.value === 'submitPlan' || s.name.value === '__typename'))
  );
}

function queryIsSubmitPlan(query: unknown, limits: QueryLimits): boolean {
  if (typeof query !== 'string') return false;
  try {
    return isSubmitPlanOnly(parseLimited(query, limits));
  } catch {
    return false; // not a parsable document: the small limit applies, and Apollo reports the syntax error
  }
}

/** The first "query" string member in the first bytes of a JSON body, decoded; null if not there whole. */
export function peekQuery(prefix: string): string | null {
  const m = /"query"\s*:\s*("(?:[^"\\]|\\.)*")/.exec(prefix);
  if (!m) return null;
  try {
    return JSON.parse(m[1]) as string;
  } catch {
    return null; // the expected answer for a string literal cut or malformed: not there whole
  }
}

const mib = (n: number) => (n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(n % (1024 * 1024) ? 1 : 0)} MiB` : `${n} bytes`);

export function graphqlBody(l: BodyLimits): RequestHandler {
  const small = Math.min(l.maxBodyBytes, l.maxRequestBytes);
  const tooLarge = (got: string, limit = small) =>
    limit > small
      ? `request body ${got} is more than ${mib(l.maxRequestBytes)} (MAX_REQUEST_BYTES), the limit of a submitPlan`
      : `request body ${got} is more than ${mib(small)} (MAX_BODY_BYTES); only a submitPlan mutation may be larger, up to ${mib(l.maxRequestBytes)} (MAX_REQUEST_BYTES), and its JSON body must give "query" before "variables"`;
  return (req, res, next) => {
    if (req.method !== 'POST' || !req.is('application/json')) return next();
    const encoding = (req.headers['content-encoding'] ?? 'identity').toLowerCase();
    if (encoding !== 'identity') {
      res.status(415).json({ error: `Content-Encoding ${encoding} is not accepted: send the body uncompressed` });
      return;
    }
    const declared = req.headers['content-length'] === undefined ? null : Number(req.headers['content-length']);
    const refuse = (status: number, error: string) => {
      req.removeListener('data', onData);
      req.removeListener('end', onEnd);
      chunks.length = 0;
      req.resume(); // the rest is read and dropped, never kept
      res.status(status).setHeader('Connection', 'close');
      res.json({ error });
    };
    if (declared !== null && declared > l.maxRequestBytes) {
      res.status(413).setHeader('Connection', 'close');
      res.json({ error: `request body of ${declared} bytes is more than ${mib(l.maxRequestBytes)} (MAX_REQUEST_BYTES)` });
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let limit = small;
    let decided = declared !== null && declared <= small;
    const decide = () => {
      decided = true;
      const prefix = Buffer.concat(chunks).subarray(0, PEEK_BYTES).toString('utf8');
      if (queryIsSubmitPlan(peekQuery(prefix), l.query)) limit = l.maxRequestBytes;
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (!decided && size >= PEEK_BYTES) decide();
      if (decided && size > limit) refuse(413, tooLarge(declared !== null ? `of ${declared} bytes` : `of more than ${size} bytes`, limit));
      else if (decided && declared !== null && declared > limit) refuse(413, tooLarge(`of ${declared} bytes`, limit));
    };
    const onEnd = () => {
      req.removeListener('data', onData);
      const text = Buffer.concat(chunks).toString('utf8');
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch (e) {
        res.status(400).json({ error: `the request body is not JSON: ${(e as Error).message}` });
        return;
      }
      // decided from a prefix: make sure what runs with a large body is the submitPlan it showed
      if (size > small && !queryIsSubmitPlan((body as { query?: unknown } | null)?.query, l.query)) {
        res.status(413).json({ error: tooLarge(`of ${size} bytes`) });
        return;
      }
      req.body = body;
      next();
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', (err) => next(err));
  };
}
