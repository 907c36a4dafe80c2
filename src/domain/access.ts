// Who may do what (issue 11), pure: the API asks these before it runs an operation, the services
// before they touch a plan. With authentication off there is no caller (null): everything is allowed.
import type { Role } from './enums';

/** The caller of one request: the token it carried. */
export interface Caller {
  tokenId: string;
  name: string;
  role: Role;
}

const RANK: Record<Role, number> = { VIEWER: 0, SUBMITTER: 1, ADMIN: 2 };

/** Whether `role` includes what `needed` may do (ADMIN ⊇ SUBMITTER ⊇ VIEWER). */
export const hasRole = (role: Role, needed: Role): boolean => RANK[role] >= RANK[needed];

/**
 * The role a root field needs. Queries and subscriptions: VIEWER, but `tokens` (ADMIN). Mutations: those
 * listed, and ADMIN for any mutation not listed (a new one is closed until someone opens it here).
 */
const MUTATION_ROLES: Record<string, Role> = {
  submitPlan: 'SUBMITTER',
  cancelPlan: 'SUBMITTER',
  cancelTest: 'SUBMITTER',
  deletePlan: 'SUBMITTER',
  createToken: 'ADMIN',
  revokeToken: 'ADMIN',
};
const QUERY_ROLES: Record<string, Role> = { tokens: 'ADMIN' };

export function roleForField(operation: 'query' | 'mutation' | 'subscription', field: string): Role {
  if (operation === 'mutation') return Object.hasOwn(MUTATION_ROLES, field) ? MUTATION_ROLES[field] : 'ADMIN';
  if (operation === 'query' && Object.hasOwn(QUERY_ROLES, field)) return QUERY_ROLES[field];
  return 'VIEWER';
}

/** null when `caller` may do what needs `needed`, else why not (the FORBIDDEN message). */
export function refusal(caller: Caller | null, needed: Role, what: string): string | null {
  if (caller === null || hasRole(caller.role, needed)) return null;
  return `token "${caller.name}" has role ${caller.role}; ${what} needs ${needed}${needed === 'ADMIN' ? '' : ' or ADMIN'}`;
}

/**
 * Whether `caller` may cancel or delete a plan submitted by the token `ownerTokenId` (null: submitted
 * while authentication was off, so nobody's own): its submitter, or an ADMIN.
 */
export function mayChangePlan(caller: Caller | null, ownerTokenId: string | null): boolean {
  if (caller === null || caller.role === 'ADMIN') return true;
  return caller.role === 'SUBMITTER' && ownerTokenId === caller.tokenId;
}

/** The secret from an `Authorization` value: "Bearer <token>" (the scheme in any case), else null. */
export function bearerSecret(header: unknown): string | null {
  if (typeof header !== 'string' || header.length > 512) return null;
  const m = /^Bearer +([A-Za-z0-9_\-.~+/]+=*) *$/i.exec(header);
  return m ? m[1] : null;
}

/** What a token secret looks like: "orch_" and 43 base64url characters (32 random bytes). */
export const TOKEN_PATTERN = /^orch_[A-Za-z0-9_-]{43}$/;

/** A token's name: what plans show as submittedBy and the CLI revokes by. */
export function tokenNameProblem(name: unknown): string | null {
  if (typeof name !== 'string') return 'name must be a string';
  if (!/^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/.test(name)) {
    return `name must be 1 to 64 letters, digits, ".", "_", "@" or "-", starting with a letter or digit (got ${JSON.stringify(name.slice(0, 70))})`;
  }
  return null;
}
