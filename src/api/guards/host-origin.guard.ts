import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import type { RequestHandler } from 'express';
import type { ApiSecurity } from '../../config/api-security';

/**
 * DNS rebinding and cross-site requests (issue 6, item 7).
 *
 * Host: a page on evil.example whose name is made to resolve to 127.0.0.1 talks to this server with
 * `Host: evil.example`. Allowed are IP literals (a browser that sent one addressed that IP itself, so no
 * page of another site can be behind it: Kubernetes probes use the pod IP), `localhost`, the names in ALLOWED_HOSTS and HOST when it is a
 * name. The port is not compared: rebinding changes the name, not the port.
 *
 * Origin: a browser names the page that makes a request (every POST, every WebSocket upgrade). Allowed
 * are the server's own pages (an Origin whose host and port are those of the Host header, which passed the
 * check above), ALLOWED_ORIGINS, and, while ALLOWED_ORIGINS is unset, the origins made from the allowed
 * host names (http and https, default port or this server's port). A request without Origin (curl, CI,
 * a server-side client) passes; `Origin: null` (sandboxed frames, file:) does not.
 */
export class HostOriginGuard {
  constructor(
    private readonly sec: Pick<ApiSecurity, 'allowedHosts' | 'allowedOrigins'>,
    /** The port this server listens on (known after listen when PORT=0). */
    private readonly port: () => number,
  ) {}

  /** Why this request is refused, or null. */
  refusal(req: IncomingMessage): string | null {
    const host = req.headers.host;
    if (this.sec.allowedHosts !== null) {
      if (!host) return 'a request without a Host header is refused';
      if (!this.hostAllowed(host)) {
        return `Host "${clip(host)}" is not a name of this server: add it to ALLOWED_HOSTS to serve it (DNS rebinding protection)`;
      }
    }
    const origin = req.headers.origin;
    if (origin !== undefined && this.sec.allowedOrigins !== null && !this.originAllowed(origin, host)) {
      return `Origin "${clip(origin)}" may not use this API: add it to ALLOWED_ORIGINS to allow pages there (cross-site request protection)`;
    }
    return null;
  }

  hostAllowed(hostHeader: string): boolean {
    const name = hostName(hostHeader);
    if (name === null) return false;
    if (isIP(name) || name === 'localhost') return true;
    return (this.sec.allowedHosts ?? []).some((h) => {
      const allowed = h.replace(/\.$/, '');
      return allowed.startsWith('.') ? name === allowed.slice(1) || name.endsWith(allowed) : name === allowed;
    });
  }

  originAllowed(origin: string, hostHeader: string | undefined): boolean {
    let url: URL;
    try {
      url = new URL(origin);
    } catch {
      return false; // not a URL ("null" among them): no page of ours sends that
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
    if (hostHeader && url.host === hostHeader.toLowerCase() && this.hostAllowed(hostHeader)) return true;
    const list = this.sec.allowedOrigins ?? this.originsFromHosts();
    return list.includes(url.origin);
  }

  private originsFromHosts(): string[] {
    const names = ['localhost', '127.0.0.1', '[::1]', ...(this.sec.allowedHosts ?? []).filter((h) => !h.startsWith('.'))];
    return names.flatMap((n) => ['http', 'https'].flatMap((s) => [`${s}://${n}`, `${s}://${n}:${this.port()}`]));
  }

  middleware(): RequestHandler {
    return (req, res, next) => {
      const refused = this.refusal(req);
      if (refused === null) return next();
      res.status(403).json({ error: refused });
    };
  }
}

/** The host name of a Host header (`name[:port]`, `[v6]:port`), lower case, without a trailing dot. */
function hostName(header: string): string | null {
  const h = header.trim().toLowerCase();
  const m = /^(\[[0-9a-f:.]+\]|[^:[\]]+)(?::\d{1,5})?$/.exec(h);
  if (!m) return null;
  const name = m[1].startsWith('[') ? m[1].slice(1, -1) : m[1];
  return name.replace(/\.$/, '');
}

const clip = (s: string) => (s.length > 100 ? `${s.slice(0, 100)}…` : s).replace(/[^\x20-\x7e]/g, '?');
