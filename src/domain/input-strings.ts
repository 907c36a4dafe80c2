// One rule for every string a client sends: no NUL (U+0000). PostgreSQL text and jsonb cannot hold it, a
// shell cannot pass it, and no name, script, command or key needs it. Pure.

const MAX_REPORTED = 100;

/**
 * The field paths ("tests[2].services[0].command", "idempotencyKey") of every string inside `value` that
 * holds a NUL, in input order (at most 100). Walks plain objects and arrays (GraphQL input objects too),
 * without recursion: any depth is walked.
 */
export function fieldsWithNul(value: unknown): string[] {
  const out: string[] = [];
  const stack: [unknown, string][] = [[value, '']];
  while (stack.length && out.length < MAX_REPORTED) {
    const [v, path] = stack.pop()!;
    if (typeof v === 'string') {
      if (v.includes('\0')) out.push(path || '(input)');
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], `${path}[${i}]`]);
    } else if (v !== null && typeof v === 'object') {
      const entries = Object.entries(v);
      for (let i = entries.length - 1; i >= 0; i--) stack.push([entries[i][1], path ? `${path}.${entries[i][0]}` : entries[i][0]]);
    }
  }
  return out;
}

export const NUL_MESSAGE = 'must not contain NUL (\\u0000)';
