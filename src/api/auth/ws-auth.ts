// The token of a graphql-ws connection (AUTH=on): the connection_init payload
// { "authorization": "Bearer <token>" }. A missing or bad one closes the socket with 4401; so does the
// revocation of the token while the connection is open (in any API process: the authenticator hears it).
import { GraphQLError } from 'graphql';
import type { WebSocket } from 'ws';
import { bearerSecret, type Caller } from '../../domain/access';
import type { AuthGate } from './http-auth';

export const WS_UNAUTHORIZED = 4401;

interface Conn {
  connectionParams?: Readonly<Record<string, unknown>>;
  subscriptions: Record<string, unknown>;
  extra: { socket: WebSocket; caller?: Caller | null };
}

export const tooManyTokenSubscriptions = (name: string, limit: number) =>
  `token "${name}" already runs ${limit} subscriptions on this server, its limit (MAX_SUBSCRIPTIONS_PER_TOKEN): complete one first (retry in 5 s, or once one has ended)`;

export class WsAuth {
  private readonly byToken = new Map<string, Set<Conn>>();

  constructor(
    private readonly gate: AuthGate,
    private readonly maxSubscriptions: number,
  ) {
    gate.authenticator.onRevoked((id) => {
      for (const c of this.byToken.get(id) ?? []) c.extra.socket.close(WS_UNAUTHORIZED, 'Unauthorized: the token was revoked');
      this.byToken.delete(id);
    });
    gate.authenticator.holding(() => this.byToken.keys());
  }

  /** graphql-ws onConnect: true lets the connection in; false after closing it with 4401. */
  async connect(ctx: Conn): Promise<boolean> {
    if (!this.gate.enabled) return true;
    const raw = ctx.connectionParams?.authorization ?? ctx.connectionParams?.Authorization;
    let caller: Caller | null = null;
    try {
      caller = await this.gate.authenticator.authenticate(bearerSecret(raw));
    } catch (err) {
      this.gate.logger.warn({ err: (err as Error).message }, 'a token could not be looked up');
      ctx.extra.socket.close(1011, 'the token could not be checked: try again');
      return false;
    }
    if (!caller) {
      ctx.extra.socket.close(WS_UNAUTHORIZED, raw === undefined ? 'Unauthorized: send { "authorization": "Bearer <token>" } in connection_init' : 'Unauthorized: the token is not valid');
      return false;
    }
    ctx.extra.caller = caller;
    let set = this.byToken.get(caller.tokenId);
    if (!set) this.byToken.set(caller.tokenId, (set = new Set()));
    set.add(ctx);
    const tokenId = caller.tokenId;
    ctx.extra.socket.once('close', () => {
      const s = this.byToken.get(tokenId);
      s?.delete(ctx);
      if (s && !s.size) this.byToken.delete(tokenId);
    });
    return true;
  }

  caller(ctx: Conn): Caller | null {
    return ctx.extra.caller ?? null;
  }

  /** The error of an operation past the token's subscription limit (counting this one), or null. */
  overLimit(ctx: Conn): GraphQLError | null {
    const caller = ctx.extra.caller;
    if (!caller) return null;
    let n = 0;
    for (const c of this.byToken.get(caller.tokenId) ?? []) n += Object.keys(c.subscriptions).length;
    if (n <= this.maxSubscriptions) return null;
    return new GraphQLError(tooManyTokenSubscriptions(caller.name, this.maxSubscriptions), { extensions: { code: 'RATE_LIMITED', limit: 'MAX_SUBSCRIPTIONS_PER_TOKEN', retryAfter: 5 } });
  }
}
