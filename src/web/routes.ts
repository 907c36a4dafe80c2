import { createReadStream } from 'node:fs';
import type { Express } from 'express';
import { mountAssets } from './assets';
import { DASHBOARD_CSS, mountDashboard } from './dashboard';
import { DASHBOARD_SCRIPT } from './dashboard.script';
import { mountGraphiql } from './graphiql';
import { GRAPHIQL_SCRIPT } from './graphiql.script';

/** Pages and files served beside the API: the live dashboard (at /), GraphiQL, downloads of artifacts. */
export function mountWeb(
  app: Express,
  o: { artifactPath?(id: string): Promise<{ path: string; name: string } | null>; logger: { warn(obj: object, msg?: string): void } },
): void {
  mountAssets(app, { 'dashboard.js': DASHBOARD_SCRIPT, 'dashboard.css': DASHBOARD_CSS, 'graphiql-page.js': GRAPHIQL_SCRIPT });
  mountGraphiql(app);
  mountDashboard(app);
  app.get('/favicon.ico', (_req, res) => {
    res.status(204).end();
  });
  app.get('/artifacts/:id', async (req, res) => {
    let found: { path: string; name: string } | null = null;
    try {
      found = o.artifactPath ? await o.artifactPath(String(req.params.id)) : null;
    } catch (err) {
      // the database did not answer: not a missing artifact
      o.logger.warn({ err: (err as Error).message, artifactId: String(req.params.id) }, 'artifact lookup failed');
      res.status(503).json({ error: 'the artifact could not be looked up; try again' });
      return;
    }
    if (!found) {
      res.status(404).json({ error: 'no such artifact' });
      return;
    }
    res.setHeader('Content-Type', 'application/octet-stream');
    res.setHeader('Content-Disposition', `attachment; filename="${found.name.replace(/[^A-Za-z0-9._-]/g, '_')}"`);
    createReadStream(found.path)
      .on('error', (err) => {
        o.logger.warn({ err: err.message, artifactId: String(req.params.id) }, 'reading an artifact failed');
        res.destroy();
      })
      .pipe(res);
  });
}
