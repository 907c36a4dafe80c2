// A driver in a process of the test's own making (extra inherited descriptors, a chosen environment):
//   node driver-child.js <direct|remote> IMAGE_DIR STATE_DIR IMAGE SCRIPT
// Runs SCRIPT once in a fresh environment and prints one JSON line: the outcome's stdout, stderr and
// exit code, and (remote) the environment of its driver host process as /proc/<pid>/environ shows it.
import { readFileSync, readdirSync } from 'node:fs';
import { ContainerDriver } from '../../src/environments/container/driver';
import type { EnvironmentDriver, EnvironmentShape } from '../../src/environments/driver';
import { RemoteDriver } from '../../src/environments/remote/remote.driver';

const [mode, imageDir, stateDir, image, script] = process.argv.slice(2);
const quiet = { info() {}, warn() {}, error() {} };
const shape: EnvironmentShape = { pool: 'child', kind: 'CONTAINER', arch: 'x86_64', cpus: 1, memoryMb: 128, image, pids: 64 };

/** Environments (NUL-separated variables) of this process's child processes. */
function childEnvirons(): string[][] {
  const pids = readdirSync('/proc/self/task').flatMap((t) => readFileSync(`/proc/self/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean));
  return pids.map((pid) => readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean));
}

async function main(): Promise<void> {
  const options = { imageDir, stateDir };
  const driver: EnvironmentDriver =
    mode === 'remote' ? new RemoteDriver('CONTAINER', options, quiet) : new ContainerDriver({ ...options, logger: quiet });
  await driver.preflight(shape);
  const env = await driver.provision(`child-${process.pid}`, shape);
  const hostEnv = mode === 'remote' ? childEnvirons() : [];
  const o = await driver.run(env, {
    testId: 'child', attempt: 1, script, env: {}, timeoutMs: 20_000, services: [], artifactPaths: [],
    artifactDir: `${stateDir}/art`, maxOutputBytes: 65536,
  });
  await driver.destroy(env);
  await driver.close?.();
  process.stdout.write(`${JSON.stringify({ stdout: o.stdout, stderr: o.stderr, exitCode: o.exitCode, hostEnv })}\n`);
}

// `node --test dist/test/` loads every file, this one too, without arguments: then it does nothing
if (mode) {
  main().catch((err: Error) => {
    process.stderr.write(`${err.stack ?? err.message}\n`);
    process.exit(1);
  });
}
