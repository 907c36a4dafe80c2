import type { IncomingMessage } from 'node:http';
import type { WebSocket, WebSocketServer } from 'ws';
import type { WsLimits } from '../../config/api-security';

/**
 * Open graphql-ws connections, in total and per remote address (issue 6, item 8). ws runs verifyClient
 * and then registers the connection in the same tick, so the counts cannot be raced past. Behind a proxy
 * every client has the proxy's address: raise WS_MAX_CONNECTIONS_PER_ADDRESS there (X-Forwarded-For is
 * not trusted: any client can write it).
 */
export class WsConnectionLimits {
  private readonly perAddress = new Map<string, number>();

  constructor(
    private readonly limits: WsLimits,
    private readonly server: () => WebSocketServer,
  ) {}

  /** [status, message] of a refused upgrade, or null. */
  refusal(req: IncomingMessage): [number, string] | null {
    if (this.server().clients.size >= this.limits.maxConnections) {
      return [503, `this server has ${this.limits.maxConnections} WebSocket connections open, its limit (WS_MAX_CONNECTIONS): try again later`];
    }
    const n = this.perAddress.get(address(req)) ?? 0;
    if (n >= this.limits.maxConnectionsPerAddress) {
      return [429, `${n} WebSocket connections are open from ${address(req)}, the limit per address (WS_MAX_CONNECTIONS_PER_ADDRESS): close some first`];
    }
    return null;
  }

  track(socket: WebSocket, req: IncomingMessage): void {
    const a = address(req);
    this.perAddress.set(a, (this.perAddress.get(a) ?? 0) + 1);
    socket.once('close', () => {
      const left = (this.perAddress.get(a) ?? 1) - 1;
      if (left > 0) this.perAddress.set(a, left);
      else this.perAddress.delete(a);
    });
  }
}

const address = (req: IncomingMessage) => req.socket.remoteAddress ?? 'unknown';

export const tooManySubscriptions = (limit: number) =>
  `this connection already runs ${limit} operations, the limit (WS_MAX_SUBSCRIPTIONS_PER_CONNECTION): complete one or open another connection`;
