// Matching a test's requirements to a configured pool. Pure.

import type { EnvironmentKind, TestType } from './enums';

export type Kind = EnvironmentKind;
export type { TestType };

export interface PoolOffer {
  name: string;
  kind: Kind;
  arch: string;
  cpus: number;
  memoryMb: number;
  /** The image its tests run in when they name none. */
  image: string;
  /** The images its tests may ask for; "*" allows every image of its kind. Default ["*"]. */
  images?: readonly string[];
  tags: readonly string[];
  capacity: number;
  testTypes: readonly TestType[];
}

export interface Requirements {
  kind?: Kind | null;
  arch?: string | null;
  cpus?: number | null;
  memoryMb?: number | null;
  image?: string | null;
  tags?: readonly string[] | null;
}

/** Why a pool does not serve a test, or null when it does. */
export function mismatch(pool: PoolOffer, type: TestType, req: Requirements): string | null {
  if (!pool.testTypes.includes(type)) return `does not run ${type} tests`;
  if (req.kind && pool.kind !== req.kind) return `is ${pool.kind}, not ${req.kind}`;
  if (req.arch && pool.arch !== req.arch) return `is ${pool.arch}, not ${req.arch}`;
  if (req.cpus && pool.cpus < req.cpus) return `has ${pool.cpus} CPUs, fewer than ${req.cpus}`;
  if (req.memoryMb && pool.memoryMb < req.memoryMb) return `has ${pool.memoryMb} MB, less than ${req.memoryMb}`;
  if (req.image && !allowsImage(pool, req.image)) return `does not offer image ${req.image} (it offers ${(pool.images ?? []).join(', ') || pool.image})`;
  const missing = (req.tags ?? []).filter((t) => !pool.tags.includes(t));
  if (missing.length) return `lacks tag${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`;
  return null;
}

/** Whether a test of `pool` may ask for `image`: its default, a listed one, or any when it lists "*". */
export function allowsImage(pool: PoolOffer, image: string): boolean {
  if (pool.image === image) return true;
  const images = pool.images ?? ['*'];
  return images.includes('*') || images.includes(image);
}

/** The image a test runs in: the one it asks for, else its pool's default. */
export function imageOf(pool: PoolOffer, req: Requirements): string {
  return req.image || pool.image;
}

/**
 * The smallest pool that serves the test. With no kind required, containers come before VMs (a VM is
 * chosen only when arch, CPUs or memory can be met by a VM pool alone); then fewer CPUs, less memory.
 */
export function matchPool<P extends PoolOffer>(pools: readonly P[], type: TestType, req: Requirements): P | null {
  let best: P | null = null;
  for (const pool of pools) {
    if (mismatch(pool, type, req) !== null) continue;
    if (!best || compareSize(pool, best) < 0) best = pool;
  }
  return best;
}

function compareSize(a: PoolOffer, b: PoolOffer): number {
  const kindRank = (p: PoolOffer) => (p.kind === 'CONTAINER' ? 0 : 1);
  return kindRank(a) - kindRank(b) || a.cpus - b.cpus || a.memoryMb - b.memoryMb || b.capacity - a.capacity;
}

/** One readable sentence of why no pool serves a test: each pool's first mismatch. */
export function explainUnschedulable(pools: readonly PoolOffer[], type: TestType, req: Requirements): string {
  return pools.map((p) => `pool "${p.name}" ${mismatch(p, type, req)}`).join('; ');
}
