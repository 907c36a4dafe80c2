import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApolloServer } from '@apollo/server';
import { ApolloServerPluginDrainHttpServer } from '@apollo/server/plugin/drainHttpServer';
import { ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { expressMiddleware } from '@as-integrations/express5';
import express from 'express';
import { GraphQLError, type GraphQLSchema } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import type { Logger } from 'pino';
import { WebSocketServer } from 'ws';
import { makeContext, type Services } from './context';
import type { LiveEvents } from './live';
import { mountWeb } from '../web/routes';
import { mountDownloads } from './downloads';
import { mountBundles } from './bundles.route';
import type { ApiSecurity } from '../config/api-security';
import { graphqlBody } from './guards/body-limit.middleware';
import { HostOriginGuard } from './guards/host-origin.guard';
import { TOKEN_LIMIT_PATTERN, costError, limitRules, tokenLimitMessage } from './guards/query-limits';
import { WsOperationCheck } from './guards/ws-operation';
import { WsConnectionLimits, tooManySubscriptions } from './guards/ws-limits';
import type { AuthConfig } from '../config/auth';
import { callerOf, requireRole, requireToken, uploadLimit, type AuthGate } from './auth/http-auth';
import { WsAuth } from './auth/ws-auth';

export interface ApiServerOptions {
  schema: GraphQLSchema;
  services: Services;
  live: LiveEvents;
  logger: Logger;
  host: string;
  port: number;
  maxRequestBytes: number;
  security: ApiSecurity;
  /** AUTH=on: every request but /healthz, /readyz and the pages carries a token. */
  auth: AuthConfig;
  /** Readiness: resolves when the database and Redis answer, rejects with what is down. */
  ready(): Promise<void>;
}

export interface ApiServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** HTTP (GraphQL over POST, /healthz, /readyz, the pages, artifact downloads) and graphql-ws, on one port and one path. */
export async function startApiServer(o: ApiServerOptions): Promise<ApiServer> {
  const app = express();
  const httpServer: Server = createServer(app);
  const sec = o.security;
  const limits = sec.query;
  let port = o.port;
  const guard = new HostOriginGuard(sec, () => port);
  // Every request, /healthz included (a probe by IP address passes), and every WebSocket upgrade:
  // a foreign Host or Origin is refused before anything runs.
  app.use(guard.middleware());

  const wsLimits = new WsConnectionLimits(sec.ws, () => wsServer);
  const wsServer: WebSocketServer = new WebSocketServer({
    server: httpServer,
    path: '/graphql',
    // a message holds one operation; plans of more than MAX_BODY_BYTES go over HTTP
    maxPayload: Math.min(sec.maxBodyBytes, o.maxRequestBytes),
    verifyClient: (info, done) => {
      const refused = guard.refusal(info.req);
      if (refused !== null) return done(false, 403, refused);
      const full = wsLimits.refusal(info.req);
      if (full !== null) return done(false, full[0], full[1]);
      done(true);
    },
  });
  wsServer.on('connection', (socket, req) => wsLimits.track(socket, req));
  const wsCheck = new WsOperationCheck(o.schema, limits, sec.introspection);
  const gate: AuthGate = { enabled: o.auth.enabled, authenticator: o.services.authenticator, logger: o.logger };
  const wsAuth = new WsAuth(gate, o.auth.maxSubscriptions);
  const wsCleanup = useServer(
    {
      schema: o.schema,
      onConnect: (ctx) => wsAuth.connect(ctx as never),
      context: (ctx) => makeContext(o.services, o.live, wsAuth.caller(ctx as never)),
      // the same limits as over HTTP, before anything runs
      onSubscribe: (ctx, _id, payload) => {
        if (Object.keys(ctx.subscriptions).length > sec.ws.maxSubscriptionsPerConnection) {
          return [new GraphQLError(tooManySubscriptions(sec.ws.maxSubscriptionsPerConnection), { extensions: { code: 'TOO_MANY_SUBSCRIPTIONS' } })];
        }
        const over = wsAuth.overLimit(ctx as never);
        if (over) return [over];
        return wsCheck.check(payload);
      },
      onError: (_ctx, _id, _payload, errors) => {
        o.logger.warn({ errors: errors.map((e) => e.message) }, 'subscription error');
      },
    },
    wsServer,
  );
  const apollo = new ApolloServer({
    schema: o.schema,
    introspection: sec.introspection,
    parseOptions: { maxTokens: limits.tokens },
    validationRules: limitRules(limits, true), // introspection: Apollo adds its own rule when off
    includeStacktraceInErrorResponses: false,
    stopOnTerminationSignals: false, // main.ts owns the signals and stops every part in order
    plugins: [
      ApolloServerPluginDrainHttpServer({ httpServer }),
      ApolloServerPluginLandingPageDisabled(),
      {
        async requestDidStart() {
          return {
            async didResolveOperation(rc) {
              const err = costError(o.schema, rc.document, rc.request.variables, rc.request.operationName, limits);
              if (err) throw err;
            },
          };
        },
      },
      {
        async serverWillStart() {
          return {
            async drainServer() {
              await wsCleanup.dispose();
            },
          };
        },
      },
    ],
    formatError: (formatted, err) => {
      const code = formatted.extensions?.code;
      if (TOKEN_LIMIT_PATTERN.test(formatted.message)) return { ...formatted, message: tokenLimitMessage(limits.tokens) };
      if (code !== 'INTERNAL_SERVER_ERROR') return formatted;
      // the details (queries, file paths) go to the log, not to the client
      o.logger.error({ err, path: formatted.path }, 'GraphQL request failed');
      return { message: 'internal server error: the details are in the server log', path: formatted.path, extensions: { code } };
    },
  });
  await apollo.start();

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    try {
      await o.ready();
      res.json({ status: 'ready' });
    } catch (e) {
      res.status(503).json({ status: 'unavailable', detail: (e as Error).message });
    }
  });
  mountWeb(app, { auth: o.auth.enabled });
  // with AUTH=on: a token before anything else is read (the Host/Origin guard ran already)
  app.use(['/artifacts', '/plans'], requireToken(gate, 'json'));
  app.use('/bundles', requireToken(gate, 'json')); // GET /bundles/:id: any role
  app.post('/bundles', requireRole('SUBMITTER', 'uploading a bundle'), uploadLimit(o.services.fairUse, o.logger));
  mountDownloads(app, { services: o.services, logger: o.logger });
  mountBundles(app, { upload: (body, declared) => o.services.bundles.upload(body, declared), info: (id) => o.services.bundles.info(id), logger: o.logger });
  app.use(
    '/graphql',
    requireToken(gate, 'graphql'),
    graphqlBody({ maxBodyBytes: sec.maxBodyBytes, maxRequestBytes: o.maxRequestBytes, query: limits }),
    expressMiddleware(apollo, { context: async ({ res }) => makeContext(o.services, o.live, callerOf(res)) }),
  );

  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(o.port, o.host, () => {
      httpServer.off('error', reject);
      resolve();
    });
  });
  port = (httpServer.address() as AddressInfo).port;
  const url = `http://${o.host.includes(':') ? `[${o.host}]` : o.host}:${port}`;
  return {
    url,
    port,
    async close() {
      await apollo.stop(); // drains HTTP and closes the WebSocket subscriptions
      wsServer.close();
      httpServer.closeAllConnections();
      await new Promise<void>((resolve) => (httpServer.listening ? httpServer.close(() => resolve()) : resolve()));
    },
  };
}
