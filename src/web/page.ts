import type { Express } from 'express';

/** Serves a fixed HTML page at `path`. */
export function servePage(app: Express, path: string, html: string): void {
  app.get(path, (_req, res) => {
    res.setHeader('Content-Type', 'text/html; charset=utf-8');
    res.send(html);
  });
}
