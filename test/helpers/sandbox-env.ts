// Shared helpers of sandbox tests: image dir, temp dirs, host process scans. Test helpers may read
// process.env (the product code may not below its constructors).

import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config/config';
import type { ContainerHandle } from '../../src/environments/container/env-state';
import type { EnvironmentHandle } from '../../src/environments/driver';

/** The image cache the program would use here (IMAGE_DIR, else its default: see src/config/config.ts). */
export function testImageDir(): string {
  return loadConfig({ IMAGE_DIR: process.env.IMAGE_DIR, XDG_CACHE_HOME: process.env.XDG_CACHE_HOME }).imageDir;
}

export const TEST_IMAGE = process.env.TEST_IMAGE || 'debian-bookworm';

export interface TempDir {
  path: string;
  cleanup(): void;
}

/**
 * A fresh directory under os.tmpdir() (mode 0700 from mkdtemp). `traversable`: mode 0711, so the
 * container driver's unprivileged sandbox user can reach bind sources below it when tests run as root.
 */
export function makeTempDir(prefix = 'orch-sbx-', options: { traversable?: boolean } = {}): TempDir {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  if (options.traversable) chmodSync(dir, 0o711);
  return { path: dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Host pids whose command line contains `marker` (the test process itself excluded). */
export function hostProcessesMatching(marker: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmdline.includes(marker)) found.push(pid);
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

/** A marker unlikely to appear anywhere else, usable as a `sleep` argument (e.g. 987.1234). */
export function uniqueSleepArg(): string {
  return `${900 + Math.floor(Math.random() * 99)}.${String(Math.floor(Math.random() * 1e6)).padStart(6, '0')}`;
}

export const silentLogger = { info() {}, warn() {}, error() {} };

/** Logger that prints to stderr (image build progress must never be silent). */
export const stderrLogger = {
  info: (obj: object, msg: string) => process.stderr.write(`[info] ${msg} ${JSON.stringify(obj)}\n`),
  warn: (obj: object, msg: string) => process.stderr.write(`[warn] ${msg} ${JSON.stringify(obj)}\n`),
  error: (obj: object, msg: string) => process.stderr.write(`[error] ${msg} ${JSON.stringify(obj)}\n`),
};

/**
 * The conformance hooks of the container driver (in process or behind its driver host): a sandbox's
 * processes are host processes, and its working directory is `<stateDir>/work` on the host (the
 * container handle names its stateDir, also as it comes back from a driver host).
 */
export const containerConformanceHooks = {
  async processesMatching(_env: EnvironmentHandle, marker: string): Promise<number[]> {
    return hostProcessesMatching(marker);
  },
  async workDirEntries(env: EnvironmentHandle): Promise<string[]> {
    return readdirSync(path.join((env as ContainerHandle).stateDir, 'work')).sort();
  },
};
