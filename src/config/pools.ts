import { readFileSync } from 'node:fs';
import { z } from 'zod';

import { ENVIRONMENT_KINDS, TEST_TYPES } from '../domain/enums';

const imageName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/, 'an image name: letters, digits, ".", "_" and "-"');
const name = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'lower-case letters, digits, "-" and "_", at most 63');

export const poolSchema = z.object({
  name,
  kind: z.enum(ENVIRONMENT_KINDS),
  arch: z.string().min(1).default('x86_64'),
  cpus: z.number().int().min(1).max(256),
  memoryMb: z.number().int().min(16).max(1024 * 1024),
  /** The image of its tests when they name none (requirements.image). */
  image: imageName,
  /** The images its tests may ask for: names of configured images, or "*" for every one. */
  images: z.array(z.union([z.literal('*'), imageName])).min(1).default(['*']),
  tags: z.array(z.string().min(1).max(64)).default([]),
  /** How many tests one worker host runs at once on this pool. */
  capacity: z.number().int().min(1).max(1024),
  /** Processes (and threads) one test may have at once. */
  pids: z.number().int().min(8).max(100_000).default(512),
  /**
   * Disk of one test's working directory in MiB (16 MiB – 1 TiB), enforced by the kernel: a
   * loop-mounted ext4 file per environment, sparse, so the host only holds what tests write.
   * Default 2048: room for a build tree; three environments of the default pools need at most 6 GB.
   */
  diskMb: z.number().int().min(16).max(1024 * 1024).default(2048),
  testTypes: z.array(z.enum(TEST_TYPES)).min(1),
});

export type PoolDefinition = z.infer<typeof poolSchema>;

export const poolsSchema = z
  .array(poolSchema)
  .min(1, 'at least one pool')
  .superRefine((pools, ctx) => {
    const seen = new Set<string>();
    pools.forEach((p, i) => {
      if (seen.has(p.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate pool name "${p.name}"` });
      seen.add(p.name);
    });
  });

/**
 * Defaults that fit one small machine (2 cores): light containers on the minimal Debian image for unit
 * and security tests, containers on the services image (python3, curl, git, Redis, PostgreSQL, …) for
 * integration tests, a single-slot pool with a dedicated CPU for performance tests, and one QEMU VM
 * (1 CPU, 512 MB) for the tests that ask for a VM. Every pool lets
 * its tests ask for any configured image.
 */
const arch = process.arch === 'arm64' ? 'aarch64' : 'x86_64';
export const DEFAULT_POOLS: PoolDefinition[] = [
  {
    name: 'container',
    kind: 'CONTAINER',
    arch,
    cpus: 1,
    memoryMb: 512,
    image: 'debian-bookworm',
    images: ['*'],
    tags: ['linux', 'debian'],
    capacity: 2,
    pids: 256,
    diskMb: 2048,
    testTypes: ['UNIT', 'SECURITY'],
  },
  {
    name: 'integration',
    kind: 'CONTAINER',
    arch,
    cpus: 1,
    memoryMb: 1024,
    image: 'debian-bookworm-services',
    images: ['*'],
    tags: ['linux', 'debian', 'services'],
    capacity: 2,
    pids: 512,
    diskMb: 2048,
    testTypes: ['INTEGRATION'],
  },
  {
    name: 'perf',
    kind: 'CONTAINER',
    arch,
    cpus: 1,
    memoryMb: 1024,
    image: 'debian-bookworm',
    images: ['*'],
    tags: ['linux', 'debian', 'dedicated-cpu'],
    capacity: 1,
    pids: 256,
    diskMb: 2048,
    testTypes: ['PERFORMANCE'],
  },
  // booted when the worker starts, in the background: the containers are served meanwhile (src/environments/qemu/)
  {
    name: 'qemu',
    kind: 'QEMU',
    arch,
    cpus: 1,
    memoryMb: 512,
    image: 'debian-bookworm',
    images: ['*'],
    tags: ['linux', 'debian', 'vm'],
    capacity: 1,
    pids: 512,
    diskMb: 2048,
    testTypes: ['UNIT', 'INTEGRATION', 'SECURITY'],
  },
];

/** Reads pool definitions from JSON text (the POOLS variable) or a JSON file (POOLS_FILE). */
export function loadPoolsSource(source: { json?: string; file?: string }): { value: unknown; origin: string } | null {
  if (source.json !== undefined && source.json.trim() !== '') {
    return { value: parseJson(source.json, 'POOLS'), origin: 'POOLS' };
  }
  if (source.file) {
    let text: string;
    try {
      text = readFileSync(source.file, 'utf8');
    } catch (e) {
      throw new Error(`POOLS_FILE: cannot read ${source.file}: ${(e as Error).message}`);
    }
    return { value: parseJson(text, `POOLS_FILE (${source.file})`), origin: `POOLS_FILE (${source.file})` };
  }
  return null;
}

function parseJson(text: string, origin: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${origin}: not valid JSON: ${(e as Error).message}`);
  }
}
