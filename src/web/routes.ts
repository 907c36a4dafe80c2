import type { Express } from 'express';
import { mountAssets } from './assets';
import { DASHBOARD_CSS, mountDashboard } from './dashboard';
import { DASHBOARD_SCRIPT } from './dashboard.script';
import { mountGraphiql } from './graphiql';
import { GRAPHIQL_SCRIPT } from './graphiql.script';

/** Pages served beside the API: the live dashboard (at /), GraphiQL (downloads: api/downloads.ts). */
export function mountWeb(app: Express, o: { auth: boolean } = { auth: false }): void {
  mountAssets(app, { 'dashboard.js': DASHBOARD_SCRIPT, 'dashboard.css': DASHBOARD_CSS, 'graphiql-page.js': GRAPHIQL_SCRIPT });
  mountGraphiql(app);
  mountDashboard(app);
  app.get('/favicon.ico', (_req, res) => {
    res.status(204).end();
  });
}
