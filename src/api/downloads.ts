// Artifacts over plain HTTP, beside /graphql: GET /artifacts/:id (one artifact, with Content-Type,
// Content-Length, Content-Disposition and one Range) and GET /plans/:id/artifacts.tar (all of a plan's,
// streamed). Every failure is a status with a JSON `{ error }` saying why, never a dropped connection
// (but a read error in the middle of a body, after its headers went out).

import { pipeline } from 'node:stream';
import type { Express, Request, Response } from 'express';
import type { Logger } from 'pino';
import { contentDisposition, contentTypeOf, parseRange } from '../domain/downloads';
import { BlobMissingError, StoreUnavailableError, type Download } from '../services/artifacts.service';
import type { Services } from './context';

function fail(res: Response, status: number, error: string): void {
  res.status(status).set('Cache-Control', 'no-store').json({ error });
}

/** What a browser may do with bytes a test wrote: nothing but save or show them as they are. */
function safeHeaders(res: Response): void {
  res.set('X-Content-Type-Options', 'nosniff');
  res.set('Content-Security-Policy', "default-src 'none'; sandbox");
}

export function mountDownloads(app: Express, o: { services: Services; logger: Logger }): void {
  const { services, logger } = o;

  app.get('/artifacts/:id', async (req: Request, res: Response) => {
    const id = String(req.params.id);
    let dl: Download | null;
    try {
      dl = await services.artifacts.open(id);
    } catch (err) {
      if (err instanceof BlobMissingError) {
        logger.warn({ artifactId: id, err: err.message }, 'an artifact whose content is not in the store was asked for');
        return fail(res, 404, err.message);
      }
      if (err instanceof StoreUnavailableError) {
        logger.error({ artifactId: id, err: err.message }, 'the artifact store cannot be read');
        return fail(res, 503, err.message);
      }
      // the database did not answer: not a missing artifact
      logger.warn({ err: (err as Error).message, artifactId: id }, 'artifact lookup failed');
      return fail(res, 503, 'the artifact could not be looked up; try again');
    }
    if (!dl) return fail(res, 404, 'no such artifact');
    const { blob } = dl;
    const size = blob.size;
    const etag = `"${dl.sha256}"`;
    // If-Range with another validator: the whole of it (the content behind an id never changes, but a client may hold another's)
    const ifRange = req.headers['if-range'];
    const range = ifRange !== undefined && ifRange !== etag ? ({ kind: 'whole' } as const) : parseRange(req.headers.range, size);
    safeHeaders(res);
    res.set('Accept-Ranges', 'bytes');
    res.set('ETag', etag);
    res.set('Cache-Control', 'private, no-cache');
    if (range.kind === 'unsatisfiable') {
      await blob.close();
      res.set('Content-Range', `bytes */${size}`);
      return fail(res, 416, `the range ${String(req.headers.range).slice(0, 100)} holds no byte of this ${size}-byte artifact`);
    }
    res.set('Content-Type', contentTypeOf(dl.name));
    res.set('Content-Disposition', contentDisposition(dl.name));
    if (range.kind === 'partial') {
      res.status(206);
      res.set('Content-Range', `bytes ${range.start}-${range.end}/${size}`);
      res.set('Content-Length', String(range.end - range.start + 1));
    } else {
      res.status(200);
      res.set('Content-Length', String(size));
    }
    if (req.method === 'HEAD' || (range.kind === 'whole' && size === 0)) {
      await blob.close();
      return void res.end();
    }
    pipeline(blob.stream(range.kind === 'partial' ? range : undefined), res, (err) => {
      if (err && !res.writableFinished && (err as NodeJS.ErrnoException).code !== 'ERR_STREAM_PREMATURE_CLOSE') {
        logger.error({ artifactId: id, err: err.message }, 'reading an artifact failed after its headers were sent');
      }
    });
  });

  app.get('/plans/:id/artifacts.tar', async (req: Request, res: Response) => {
    const id = String(req.params.id);
    try {
      if (!(await services.artifacts.planExists(id))) return fail(res, 404, 'no such plan');
    } catch (err) {
      logger.warn({ err: (err as Error).message, planId: id }, 'plan lookup for its artifacts failed');
      return fail(res, 503, 'the plan could not be looked up; try again');
    }
    try {
      await services.artifacts.checkStore();
    } catch (err) {
      logger.error({ planId: id, err: (err as Error).message }, 'the artifact store cannot be read');
      return fail(res, 503, (err as Error).message);
    }
    safeHeaders(res);
    res.status(200);
    res.set('Content-Type', 'application/x-tar');
    res.set('Content-Disposition', contentDisposition(`plan-${id}-artifacts.tar`));
    res.set('Cache-Control', 'no-store');
    if (req.method === 'HEAD') return void res.end();
    try {
      const r = await services.artifacts.writePlanTar(id, res);
      logger.debug({ planId: id, ...r }, 'plan artifacts sent as a tar');
    } catch (err) {
      // headers and part of the archive went out: ending it now leaves a tar without its end blocks
      if (!res.destroyed) logger.error({ planId: id, err: (err as Error).message }, 'sending the artifacts of a plan failed midway');
      res.destroy();
    }
  });
}
