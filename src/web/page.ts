import type { Express, Response } from 'express';

/**
 * The pages run only scripts and styles served by this server: no inline script can run (a name that
 * ever slipped into the HTML could not become code), nothing loads from elsewhere, no other site can frame
 * them. GraphiQL needs inline styles (its editor sets them) and data: fonts (in its CSS). 'self' covers
 * ws:// and wss:// to this same host in current browsers.
 */
const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "font-src 'self' data:",
  "img-src 'self' data:",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "object-src 'none'",
].join('; ');

/** Headers every page and page asset carries. */
export function setPageHeaders(res: Response): void {
  res.setHeader('Content-Security-Policy', CONTENT_SECURITY_POLICY);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('X-Frame-Options', 'DENY');
}

/** Where a page says whether authentication is on (read by auth.js). */
export const AUTH_META = '<meta name="orchestrator-auth" content="off">';

/** Serves a fixed HTML page at each of `paths` (its AUTH_META telling whether authentication is on). */
export function servePage(app: Express, paths: string[], page: string, auth = false): void {
  const html = page.replace(AUTH_META, AUTH_META.replace('"off"', auth ? '"on"' : '"off"'));
  for (const path of paths) {
    app.get(path, (_req, res) => {
      setPageHeaders(res);
      res.setHeader('Cache-Control', 'no-cache');
      res.setHeader('Content-Type', 'text/html; charset=utf-8');
      res.send(html);
    });
  }
}
