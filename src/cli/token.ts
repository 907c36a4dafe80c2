// `orchestrator token create|list|revoke`: the API tokens, on the configured database directly (so the
// first ADMIN token exists before anyone can call the API). With the embedded database the server
// must not be running (PGlite allows one process per DATA_DIR): while it runs, use createToken and
// revokeToken. A revocation is also published on REDIS_URL when one is configured, so running API
// processes stop the token at once; without it they notice within TOKEN_RECHECK_MS.
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../config/config';
import { openDatabase } from '../db/database';
import { TokensRepository } from '../db/tokens.repository';
import { ROLES } from '../domain/enums';
import { EventBus } from '../events/bus';
import { redisOptionsFromUrl } from '../infra/redis-server';
import { UserError } from '../services/errors';
import { TokenService, type TokenView } from '../services/auth/token.service';
import { UsageError, type CommandSpec, type ParsedArgs } from './args';
import type { Output } from './images';

export const TOKEN_COMMAND: CommandSpec = {
  name: 'token',
  positionals: [
    { name: 'ACTION', required: true, help: 'create, list or revoke' },
    { name: 'ID|NAME', required: false, help: 'revoke: the token to revoke, by id or name' },
  ],
  summary: 'Creates, lists and revokes API tokens (AUTH=on), on the configured database directly.',
  description: [
    '  orchestrator token create --name NAME --role VIEWER|SUBMITTER|ADMIN',
    '      prints the secret alone on stdout, once: only its hash is stored (TOKEN=$(orchestrator token create …))',
    '  orchestrator token list        every token: id, name, role, created, last used, revoked',
    '  orchestrator token revoke ID|NAME   the token stops working (at once in API processes sharing REDIS_URL)',
    'Roles: VIEWER reads (queries, subscriptions, downloads); SUBMITTER also submits, uploads bundles and',
    'cancels or deletes its own plans; ADMIN does everything, others\' plans and tokens included.',
    'Uses DATABASE_URL, or the embedded database in DATA_DIR (stop the server first: one process at a time).',
  ].join('\n'),
  options: [
    { name: 'name', value: 'NAME', help: 'create: the token\'s name (shown as a plan\'s submittedBy; never reused)' },
    { name: 'role', value: 'ROLE', help: `create: ${ROLES.join(', ')}` },
  ],
  sections: [['exit codes:', '  0  done', '  1  the database (or Redis) could not be used', '  2  a usage problem: a bad name or role, no such token, a name already taken'].join('\n')],
};

export function tokenArgs(p: ParsedArgs): { action: 'create'; name: string; role: string } | { action: 'list' } | { action: 'revoke'; id: string } {
  const [action, arg] = p.positionals;
  const only = (allowed: string[]) => {
    for (const k of Object.keys(p.options)) if (!allowed.includes(k)) throw new UsageError(`--${k} is not an option of "token ${action}" (orchestrator token --help)`);
  };
  switch (action) {
    case 'create': {
      only(['name', 'role']);
      if (arg !== undefined) throw new UsageError('token create takes no argument: --name NAME --role ROLE (orchestrator token --help)');
      const name = p.options.name;
      const role = p.options.role;
      if (typeof name !== 'string') throw new UsageError('token create needs --name NAME (orchestrator token --help)');
      if (typeof role !== 'string') throw new UsageError(`token create needs --role ${ROLES.join('|')} (orchestrator token --help)`);
      return { action, name, role: role.toUpperCase() };
    }
    case 'list':
      only([]);
      if (arg !== undefined) throw new UsageError('token list takes no argument (orchestrator token --help)');
      return { action };
    case 'revoke':
      only([]);
      if (arg === undefined) throw new UsageError('token revoke needs the ID or NAME of the token (orchestrator token list shows them)');
      return { action, id: arg };
    default:
      throw new UsageError(`ACTION must be create, list or revoke (orchestrator token --help)`);
  }
}

const row = (t: TokenView) => [t.id, t.name, t.role, t.createdAt, t.lastUsedAt ?? '-', t.revokedAt ?? '-'];

export async function tokenCommand(config: Config, args: ReturnType<typeof tokenArgs>, out: Output, logger: Logger): Promise<number> {
  const db = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir, logger });
  let redis: Redis | null = null;
  try {
    let events: EventBus | null = null;
    if (args.action === 'revoke' && config.redisUrl) {
      redis = new Redis({ ...redisOptionsFromUrl(config.redisUrl), lazyConnect: true, maxRetriesPerRequest: 1 });
      redis.on('error', () => undefined); // reported below, once
      events = new EventBus(redis, config.redisPrefix);
    }
    const service = new TokenService({ tokens: new TokensRepository(db.prisma, () => new Date()), events });
    switch (args.action) {
      case 'create': {
        const { token, apiToken } = await service.create(args.name, args.role);
        out.out(token);
        out.err(`created token "${apiToken.name}" (${apiToken.role}, id ${apiToken.id}): the secret above is shown this once; only its hash is stored`);
        return 0;
      }
      case 'list': {
        const rows = [['ID', 'NAME', 'ROLE', 'CREATED', 'LAST USED', 'REVOKED'], ...(await service.list()).map(row)];
        const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
        for (const r of rows) out.out(r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd());
        return 0;
      }
      case 'revoke': {
        let t: TokenView;
        try {
          t = await service.revoke(args.id);
        } catch (e) {
          if (e instanceof UserError) throw e;
          // the database has it revoked; only the message to running servers was lost
          out.err(`token revoked in the database, but Redis could not be told (${(e as Error).message}): API processes stop it within ${config.auth.recheckMs} ms`);
          return 0;
        }
        out.err(`revoked token "${t.name}" (${t.role}, id ${t.id}) at ${t.revokedAt}`);
        return 0;
      }
    }
    return 2; // not reached: tokenArgs allows these three actions only
  } catch (e) {
    if (e instanceof UserError) {
      out.err(`token ${args.action}: ${e.message}`);
      return 2;
    }
    throw e;
  } finally {
    redis?.disconnect();
    await db.close();
  }
}
