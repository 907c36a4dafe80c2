// POST /bundles: a tar archive (plain, gzip or zstd) as the request body, stored in the bundle store
// (services/bundle.service.ts). 201 { id, sizeBytes, files }; a refused archive 400, 413 or 415 with
// { error: "<one line naming the entry>" }. The body is streamed to the unpacker, never held whole.
// GET /bundles/:id: 200 { id, sizeBytes, files, archiveBytes, uploadedAt, plans } (HEAD too), or 404
// { error } for an id not stored (never uploaded, or deleted by retention once no plan used it).

import type { Express, Request, Response } from 'express';
import { BundleError } from '../infra/tar/bundle-error';
import type { BundleInfo, UploadedBundle } from '../services/bundle.service';

/** Content types a bundle may be sent as: none is a "simple" one, so a cross-site page cannot post one without CORS. */
const TYPES = new Set(['application/x-tar', 'application/tar', 'application/gzip', 'application/x-gzip', 'application/zstd', 'application/octet-stream']);

export interface BundleRouteOptions {
  upload(body: AsyncIterable<Buffer>, declaredBytes: number | null): Promise<UploadedBundle>;
  info(id: string): Promise<BundleInfo | null>;
  logger: { warn(obj: object, msg?: string): void; error(obj: object, msg?: string): void };
}

export function mountBundles(app: Express, o: BundleRouteOptions): void {
  app.get('/bundles/:id', async (req: Request, res: Response) => {
    const id = String(req.params.id);
    try {
      const b = await o.info(id);
      if (!b) return res.status(404).json({ error: `no bundle ${JSON.stringify(id.slice(0, 80))} is stored (upload it with POST /bundles)` });
      res.setHeader('Cache-Control', 'no-store');
      res.json({ id: b.id, sizeBytes: b.sizeBytes, files: b.files, archiveBytes: b.archiveBytes, uploadedAt: b.uploadedAt.toISOString(), plans: b.plans });
    } catch (err) {
      o.logger.error({ err }, 'reading a bundle failed');
      res.status(503).json({ error: 'the bundle could not be read: the details are in the server log' });
    }
  });
  app.post('/bundles', async (req: Request, res: Response) => {
    const refuse = (status: number, error: string) => {
      res.status(status).setHeader('Connection', 'close');
      res.json({ error });
      // the rest of the body is read and dropped, never kept; a client that keeps sending is cut off
      req.resume();
      res.once('finish', () => setTimeout(() => req.destroy(), 5_000).unref());
    };
    const encoding = (req.headers['content-encoding'] ?? 'identity').toLowerCase();
    if (encoding !== 'identity' && encoding !== 'gzip') {
      return refuse(415, `Content-Encoding ${encoding.slice(0, 40)} is not accepted: send the archive as it is (plain, gzip or zstd) with no Content-Encoding`);
    }
    const type = String(req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    if (!TYPES.has(type)) {
      return refuse(415, `Content-Type "${type.slice(0, 60) || 'none'}" is not accepted: send the archive as application/x-tar, application/gzip, application/zstd or application/octet-stream`);
    }
    const length = req.headers['content-length'];
    const declared = length === undefined ? null : Number(length);
    try {
      // ended early (a refused entry), the request stays open: the answer can still be sent
      const body = req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>;
      res.status(201).json(await o.upload(body, declared));
    } catch (err) {
      if (err instanceof BundleError) {
        o.logger.warn({ status: err.status, error: err.message }, 'bundle refused');
        return refuse(err.status, err.message);
      }
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC' || code === 'EDQUOT') return refuse(507, 'the bundle store is full (no space left on the server): try again later');
      if (code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || req.destroyed) {
        o.logger.warn({ err: (err as Error).message }, 'bundle upload cut off by the client');
        return;
      }
      o.logger.error({ err }, 'storing a bundle failed');
      return refuse(500, 'the bundle could not be stored: the details are in the server log');
    }
  });
}
