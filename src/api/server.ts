import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApolloServer } from '@apollo/server';
import { ApolloServerPluginDrainHttpServer } from '@apollo/server/plugin/drainHttpServer';
import { ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { expressMiddleware } from '@as-integrations/express5';
import express from 'express';
import type { GraphQLSchema } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import type { Logger } from 'pino';
import { WebSocketServer } from 'ws';
import { makeContext, type Services } from './context';
import type { LiveEvents } from './live';
import { mountWeb } from '../web/routes';

export interface ApiServerOptions {
  schema: GraphQLSchema;
  services: Services;
  live: LiveEvents;
  logger: Logger;
  host: string;
  port: number;
  maxRequestBytes: number;
  /** Readiness: resolves when the database and Redis answer, rejects with what is down. */
  ready(): Promise<void>;
  artifactPath?(id: string): Promise<{ path: string; name: string } | null>;
}

export interface ApiServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** HTTP (GraphQL over POST, /healthz, /readyz) and graphql-ws, on one port and one path. */
export async function startApiServer(o: ApiServerOptions): Promise<ApiServer> {
  const app = express();
  const httpServer: Server = createServer(app);
  const wsServer = new WebSocketServer({ server: httpServer, path: '/graphql' });
  const wsCleanup = useServer(
    {
      schema: o.schema,
      context: () => makeContext(o.services, o.live),
      onError: (_ctx, _id, _payload, errors) => {
        o.logger.warn({ errors: errors.map((e) => e.message) }, 'subscription error');
      },
    },
    wsServer,
  );
  const apollo = new ApolloServer({
    schema: o.schema,
    introspection: true,
    includeStacktraceInErrorResponses: false,
    stopOnTerminationSignals: false, // main.ts owns the signals and stops every part in order
    plugins: [
      ApolloServerPluginDrainHttpServer({ httpServer }),
      ApolloServerPluginLandingPageDisabled(),
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
  mountWeb(app, { artifactPath: o.artifactPath });
  app.use('/graphql', express.json({ limit: o.maxRequestBytes }), expressMiddleware(apollo, { context: async () => makeContext(o.services, o.live) }));

  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(o.port, o.host, () => {
      httpServer.off('error', reject);
      resolve();
    });
  });
  const port = (httpServer.address() as AddressInfo).port;
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
