// The kernel's CPU list format ("0-3,5", as in cpuset.cpus and /proc/self/status Cpus_allowed_list).
// Pure.

/** The CPUs of a list such as "0-3,5" (sorted, unique); throws on anything else. An empty text is none. */
export function parseCpuList(text: string): number[] {
  const out = new Set<number>();
  const t = text.trim();
  if (t === '') return [];
  for (const part of t.split(',')) {
    const m = /^(\d{1,4})(?:-(\d{1,4}))?$/.exec(part.trim());
    if (!m) throw new Error(`not a CPU list: '${text.slice(0, 100)}'`);
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    if (to < from) throw new Error(`not a CPU list: '${text.slice(0, 100)}'`);
    for (let c = from; c <= to; c++) out.add(c);
  }
  return [...out].sort((a, b) => a - b);
}

/** [0, 1, 2, 5] → "0-2,5". */
export function formatCpuList(cpus: Iterable<number>): string {
  const sorted = [...new Set(cpus)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    parts.push(i === j ? String(sorted[i]) : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

/**
 * The CPUs performance tests may reserve out of `allowed`, in the order they are taken: all but the
 * lowest (which stays for every other run, and is where the host and the orchestrator mostly run),
 * highest first.
 */
export function reservableCpus(allowed: number[]): number[] {
  const sorted = [...new Set(allowed)].sort((a, b) => a - b);
  return sorted.slice(1).reverse();
}
