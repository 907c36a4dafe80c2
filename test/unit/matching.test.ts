// Pool matching of src/domain/matching.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { explainUnschedulable, matchPool, mismatch, type PoolOffer } from '../../src/domain/matching';

const pool = (name: string, p: Partial<PoolOffer> = {}): PoolOffer => ({
  name,
  kind: 'CONTAINER',
  arch: 'x86_64',
  cpus: 1,
  memoryMb: 512,
  image: 'debian-bookworm',
  tags: ['linux'],
  capacity: 2,
  testTypes: ['UNIT', 'INTEGRATION', 'SECURITY'],
  ...p,
  images: p.images ?? [p.image ?? 'debian-bookworm'], // only its default, unless a test says otherwise
});

const small = pool('small');
const big = pool('big', { cpus: 4, memoryMb: 4096, tags: ['linux', 'dedicated-cpu'] });
const perf = pool('perf', { cpus: 2, memoryMb: 1024, testTypes: ['PERFORMANCE'], capacity: 1 });
const vm = pool('vm', { kind: 'QEMU', cpus: 1, memoryMb: 256, image: 'debian-vm' });
const armVm = pool('arm-vm', { kind: 'QEMU', arch: 'aarch64', cpus: 2, memoryMb: 2048, image: 'debian-vm' });
const hugeVm = pool('huge-vm', { kind: 'QEMU', cpus: 16, memoryMb: 65536, image: 'debian-vm', tags: ['linux', 'gpu'] });
const all = [hugeVm, armVm, vm, big, perf, small];

describe('matchPool', () => {
  it('picks the smallest serving pool, whatever the order of the list', () => {
    assert.equal(matchPool(all, 'UNIT', {})?.name, 'small');
    assert.equal(matchPool([...all].reverse(), 'UNIT', {})?.name, 'small');
    assert.equal(matchPool(all, 'UNIT', { cpus: 2 })?.name, 'big');
    assert.equal(matchPool(all, 'UNIT', { memoryMb: 1024 })?.name, 'big');
  });

  it('prefers a CONTAINER over a smaller QEMU pool when no kind is required', () => {
    // vm has less memory than small, but a VM is chosen only when no container serves
    assert.equal(matchPool([vm, small], 'UNIT', {})?.name, 'small');
    assert.equal(matchPool([small, vm], 'UNIT', {})?.name, 'small');
    // a VM is chosen when only a VM meets arch, CPUs or memory
    assert.equal(matchPool(all, 'UNIT', { arch: 'aarch64' })?.name, 'arm-vm');
    assert.equal(matchPool(all, 'UNIT', { cpus: 8 })?.name, 'huge-vm');
    assert.equal(matchPool(all, 'UNIT', { memoryMb: 8192 })?.name, 'huge-vm');
  });

  it('respects a required kind', () => {
    assert.equal(matchPool(all, 'UNIT', { kind: 'QEMU' })?.name, 'vm');
    assert.equal(matchPool(all, 'UNIT', { kind: 'CONTAINER' })?.name, 'small');
    assert.equal(matchPool([small, big], 'UNIT', { kind: 'QEMU' }), null);
  });

  it('respects arch', () => {
    assert.equal(matchPool(all, 'UNIT', { arch: 'x86_64' })?.name, 'small');
    assert.equal(matchPool(all, 'UNIT', { arch: 'riscv64' }), null);
  });

  it('respects cpus and memory as minimums', () => {
    assert.equal(matchPool(all, 'UNIT', { cpus: 4, memoryMb: 4096 })?.name, 'big');
    assert.equal(matchPool(all, 'UNIT', { cpus: 4, memoryMb: 4097 })?.name, 'huge-vm');
    assert.equal(matchPool(all, 'UNIT', { cpus: 17 }), null);
    assert.equal(matchPool(all, 'UNIT', { memoryMb: 65537 }), null);
  });

  it('respects image', () => {
    assert.equal(matchPool(all, 'UNIT', { image: 'debian-vm' })?.name, 'vm');
    assert.equal(matchPool(all, 'UNIT', { image: 'debian-bookworm' })?.name, 'small');
    assert.equal(matchPool(all, 'UNIT', { image: 'alpine' }), null);
    // a pool offers the images it lists besides its default, or any with "*"
    const py = pool('py', { images: ['debian-bookworm', 'python'] });
    const any = pool('any', { cpus: 2, images: ['*'] });
    assert.equal(matchPool([any, py], 'UNIT', { image: 'python' })?.name, 'py');
    assert.equal(matchPool([any, py], 'UNIT', { image: 'alpine' })?.name, 'any');
    assert.equal(matchPool([py], 'UNIT', { image: 'alpine' }), null);
  });

  it('respects tags: every required tag must be present', () => {
    assert.equal(matchPool(all, 'UNIT', { tags: ['linux'] })?.name, 'small');
    assert.equal(matchPool(all, 'UNIT', { tags: ['dedicated-cpu'] })?.name, 'big');
    assert.equal(matchPool(all, 'UNIT', { tags: ['linux', 'gpu'] })?.name, 'huge-vm');
    assert.equal(matchPool(all, 'UNIT', { tags: ['gpu', 'dedicated-cpu'] }), null);
    assert.equal(matchPool(all, 'UNIT', { tags: [] })?.name, 'small');
  });

  it('respects test types', () => {
    assert.equal(matchPool(all, 'PERFORMANCE', {})?.name, 'perf');
    assert.equal(matchPool([small, big, vm], 'PERFORMANCE', {}), null);
    assert.equal(matchPool([perf], 'UNIT', {}), null);
  });

  it('treats null and undefined requirements as none', () => {
    assert.equal(matchPool(all, 'UNIT', { kind: null, arch: null, cpus: null, memoryMb: null, image: null, tags: null })?.name, 'small');
  });

  it('among equal sizes prefers the larger capacity', () => {
    const a = pool('a', { capacity: 1 });
    const b = pool('b', { capacity: 4 });
    assert.equal(matchPool([a, b], 'UNIT', {})?.name, 'b');
    assert.equal(matchPool([b, a], 'UNIT', {})?.name, 'b');
  });

  it('is null for no pools at all', () => {
    assert.equal(matchPool([], 'UNIT', {}), null);
  });

  it('returns the pool object itself (its extra fields kept)', () => {
    const withExtra = { ...small, pids: 256 };
    assert.equal(matchPool([withExtra], 'UNIT', {}), withExtra);
  });
});

describe('mismatch', () => {
  it('gives the first reason, or null when the pool serves', () => {
    assert.equal(mismatch(small, 'UNIT', {}), null);
    assert.equal(mismatch(small, 'PERFORMANCE', {}), 'does not run PERFORMANCE tests');
    assert.equal(mismatch(small, 'UNIT', { kind: 'QEMU' }), 'is CONTAINER, not QEMU');
    assert.equal(mismatch(small, 'UNIT', { arch: 'aarch64' }), 'is x86_64, not aarch64');
    assert.equal(mismatch(small, 'UNIT', { cpus: 2 }), 'has 1 CPUs, fewer than 2');
    assert.equal(mismatch(small, 'UNIT', { memoryMb: 1024 }), 'has 512 MB, less than 1024');
    assert.equal(mismatch(small, 'UNIT', { image: 'alpine' }), 'does not offer image alpine (it offers debian-bookworm)');
    assert.equal(mismatch(small, 'UNIT', { tags: ['gpu'] }), 'lacks tag gpu');
    assert.equal(mismatch(small, 'UNIT', { tags: ['gpu', 'linux', 'fpga'] }), 'lacks tags gpu, fpga');
    // the test type is checked first
    assert.equal(mismatch(small, 'PERFORMANCE', { arch: 'aarch64' }), 'does not run PERFORMANCE tests');
  });
});

describe('explainUnschedulable', () => {
  it("names each pool with its first mismatch, in the configured order", () => {
    assert.equal(
      explainUnschedulable([small, perf, armVm], 'UNIT', { arch: 'aarch64', tags: ['gpu'] }),
      'pool "small" is x86_64, not aarch64; pool "perf" does not run UNIT tests; pool "arm-vm" lacks tag gpu',
    );
  });
  it('is empty when no pool is configured', () => {
    assert.equal(explainUnschedulable([], 'UNIT', {}), '');
  });
});
