// The token of an HTTP request (AUTH=on): `Authorization: Bearer <token>`. Without a valid one the
// request ends here: 401, as a GraphQL error (UNAUTHENTICATED) on /graphql, as { error } elsewhere.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { bearerSecret, refusal, type Caller } from '../../domain/access';
import type { Role } from '../../domain/enums';
import type { Authenticator } from '../../services/auth/authenticator';
import type { FairUse } from '../../services/auth/fair-use';
import { UserError } from '../../services/errors';

export interface AuthGate {
  enabled: boolean;
  authenticator: Authenticator;
  logger: { warn(obj: object, msg?: string): void };
}

export const MISSING_TOKEN = 'authentication is on: send the header "Authorization: Bearer <token>" (an ADMIN makes tokens: orchestrator token create, or createToken)';
export const INVALID_TOKEN = 'the token is not valid: unknown, malformed or revoked';

/** The caller the gate let through (null with authentication off). */
export const callerOf = (res: Response): Caller | null => (res.locals.caller as Caller | undefined) ?? null;

/** Ends a request early; a body still coming (an upload) is read and dropped, never kept. */
function end(req: Request, res: Response, status: number, body: object): void {
  if (!req.complete) {
    res.setHeader('Connection', 'close');
    req.resume();
  }
  res.status(status).set('Cache-Control', 'no-store').json(body);
}

export function requireToken(gate: AuthGate, shape: 'graphql' | 'json'): RequestHandler {
  return async (req: Request, res: Response, next: NextFunction) => {
    if (!gate.enabled) return next();
    const header = req.headers.authorization;
    let caller: Caller | null = null;
    try {
      caller = await gate.authenticator.authenticate(bearerSecret(header));
    } catch (err) {
      gate.logger.warn({ err: (err as Error).message }, 'a token could not be looked up');
      return end(req, res, 503, shape === 'graphql' ? { errors: [{ message: 'the token could not be checked: try again' }] } : { error: 'the token could not be checked: try again' });
    }
    if (!caller) {
      const message = header === undefined ? MISSING_TOKEN : INVALID_TOKEN;
      res.setHeader('WWW-Authenticate', 'Bearer realm="orchestrator"');
      return end(req, res, 401, shape === 'graphql' ? { errors: [{ message, extensions: { code: 'UNAUTHENTICATED' } }] } : { error: message });
    }
    res.locals.caller = caller;
    next();
  };
}

/** 403 unless the caller's role allows `what`. */
export function requireRole(needed: Role, what: string): RequestHandler {
  return (req, res, next) => {
    const why = refusal(callerOf(res), needed, what);
    if (why) return end(req, res, 403, { error: why });
    next();
  };
}

/** 429 (with Retry-After) past the caller's upload rate limit. */
export function uploadLimit(fairUse: FairUse, logger: AuthGate['logger']): RequestHandler {
  return async (req, res, next) => {
    try {
      await fairUse.upload(callerOf(res));
    } catch (err) {
      if (err instanceof UserError && err.code === 'RATE_LIMITED') {
        const retryAfter = Number(err.details?.retryAfter ?? 1);
        res.setHeader('Retry-After', String(retryAfter));
        return end(req, res, 429, { error: err.message, retryAfter });
      }
      logger.warn({ err: (err as Error).message }, 'the upload rate limit could not be checked');
      return end(req, res, 503, { error: 'the rate limit could not be checked: try again' });
    }
    next();
  };
}
