// What an idempotency key stands for: the digest of the content submitted with it. Pure.

import { createHash } from 'node:crypto';
import type { SubmitPlanInput } from './plan-input';

/**
 * sha256 (hex) of the canonical JSON of a submission without its idempotencyKey: object keys sorted,
 * absent and null fields alike left out, arrays in their order. The same request sent again has the same
 * digest; any change to a name, a script, an option or the order of the tests gives another.
 */
export function planDigest(input: SubmitPlanInput): string {
  const { idempotencyKey: _key, ...content } = input;
  return createHash('sha256').update(canonicalJson(content)).digest('hex');
}

export function canonicalJson(value: unknown): string {
  return JSON.stringify(canonical(value));
}

function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map((v) => (v === undefined ? null : canonical(v)));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[k];
      if (v !== null && v !== undefined) out[k] = canonical(v);
    }
    return out;
  }
  return value;
}
