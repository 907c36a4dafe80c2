import type { Express } from 'express';
import { mountAssets } from './assets';
import { DASHBOARD_CSS, mountDashboard } from './dashboard';
import { DASHBOARD_SCRIPT } from './dashboard.script';
import { mountGraphiql } from './graphiql';
import { GRAPHIQL_SCRIPT } from './graphiql.script';
import { AUTH_SCRIPT } from './auth.script';

/** Pages served beside the API: the live dashboard (at /), GraphiQL (downloads: api/downloads.ts). */
export function mountWeb(app: Express, o: { auth: boolean } = { auth: false }): void {
  mountAssets(app, { 'dashboard.js': DASHBOARD_SCRIPT, 'dashboard.css': DASHBOARD_CSS, 'graphiql-page.js': GRAPHIQL_SCRIPT, 'auth.js': AUTH_SCRIPT });
  mountGraphiql(app, o.auth);
  mountDashboard(app, o.auth);
  app.get('/favicon.ico', (_req, res) => {
    res.status(204).end();
  });
}
