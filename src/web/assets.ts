// The files the pages load, all served by this server at /graphiql/assets/NAME: libraries from this
// server's node_modules (nothing from a CDN: machines running the orchestrator are often offline) and
// the pages' own scripts. Only the names listed here are served; nothing is looked up by path.
import { dirname, join } from 'node:path';
import type { Express } from 'express';
import { setPageHeaders } from './page';

export const ASSET_PREFIX = '/graphiql/assets/';

const dir = (pkg: string) => dirname(require.resolve(`${pkg}/package.json`));

const JS = 'text/javascript; charset=utf-8';
const FILES: Record<string, { path: string; type: string }> = {
  'react.js': { path: join(dir('react'), 'umd/react.production.min.js'), type: JS },
  'react-dom.js': { path: join(dir('react-dom'), 'umd/react-dom.production.min.js'), type: JS },
  'graphql-ws.js': { path: join(dir('graphql-ws'), 'umd/graphql-ws.min.js'), type: JS },
  'graphiql.js': { path: join(dir('graphiql'), 'graphiql.min.js'), type: JS },
  'graphiql.css': { path: join(dir('graphiql'), 'graphiql.min.css'), type: 'text/css; charset=utf-8' },
  // named by the sourceMappingURL comments of the two files above (fetched by browser devtools only)
  'graphiql.min.js.map': { path: join(dir('graphiql'), 'graphiql.min.js.map'), type: 'application/json' },
  'graphiql.min.css.map': { path: join(dir('graphiql'), 'graphiql.min.css.map'), type: 'application/json' },
};

/** Serves the library files and the pages' own files (name ending .js or .css → text) under ASSET_PREFIX. */
export function mountAssets(app: Express, own: Record<string, string>): void {
  app.get(`${ASSET_PREFIX}:name`, (req, res) => {
    const name = String(req.params.name);
    setPageHeaders(res);
    if (Object.hasOwn(own, name)) {
      res.setHeader('Cache-Control', 'no-cache'); // changes with every release of this program
      res.type(name.endsWith('.css') ? 'text/css; charset=utf-8' : JS).send(own[name]);
      return;
    }
    const file = Object.hasOwn(FILES, name) ? FILES[name] : undefined;
    if (!file) {
      res.status(404).end();
      return;
    }
    res.setHeader('Cache-Control', 'public, max-age=3600');
    res.type(file.type).sendFile(file.path);
  });
}
