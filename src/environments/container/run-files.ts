// The files of one container run on the host: the control dir, the work dir's inputs and the script
// before it starts, the artifacts collected after it ends (run.ts runs it).

import { rmSync } from 'node:fs';
import path from 'node:path';
import { InfrastructureError, type RunOutcome, type RunSpec } from '../driver';
import { collectArtifacts } from './artifacts';
import { HARDENED_TMPDIR_NAME } from './bwrap-args';
import type { ContainerHost, EnvState } from './env-state';
import { writeNewFileSync } from './host-files';
import { SCRIPT_NAME, buildRunnerScript, serviceFiles } from './runner-script';
import { SECURITY_AUDIT_LOG } from './security-audit';
import { populateWork } from './work-inputs';

/**
 * Control dir (runner, status, service logs), fresh per run, and the script in the work dir.
 * Synchronous (host-files.ts says why): a few metadata calls on the control dir's tmpfs and the work
 * dir, none of which waits for a disk write.
 */
export async function prepareRunFiles(host: ContainerHost, state: EnvState, spec: RunSpec, o: { shebang: boolean; direct: boolean; hardened: boolean }): Promise<void> {
  try {
    rmSync(state.ctlDir, { recursive: true, force: true });
    host.makeSandboxDirSync(state.ctlDir);
    host.makeSandboxDirSync(state.workDir);
    if (spec.inputs) await populateWork(host.inputs, state, spec.inputs); // the bundle and the files
    if (o.hardened) host.makeSandboxDirSync(path.join(state.workDir, HARDENED_TMPDIR_NAME));
    const scriptPath = path.join(state.workDir, SCRIPT_NAME);
    rmSync(scriptPath, { force: true }); // never write through a link left by the last run
    writeNewFileSync(scriptPath, spec.script, o.shebang ? 0o755 : 0o644);
    const margin = Math.min(2000, Math.max(100, spec.timeoutMs * 0.1));
    if (!o.direct) {
      writeNewFileSync(
        path.join(state.ctlDir, 'runner.sh'),
        buildRunnerScript({ services: spec.services, shebang: o.shebang, readyBudgetMs: Math.max(0, Math.round(spec.timeoutMs - margin)) }),
        0o644,
      );
      for (const f of serviceFiles(spec.services)) writeNewFileSync(path.join(state.ctlDir, f.name), f.text, 0o644);
    }
  } catch (err) {
    if (err instanceof InfrastructureError) throw err;
    throw new InfrastructureError(`cannot prepare the work dir of ${state.handle.id}: ${(err as Error).message}`, { cause: err });
  }
}

/** The run's artifacts and service logs, copied out of the work and control dirs. */
export async function collect(host: ContainerHost, state: EnvState, spec: RunSpec, auditFile: string | null): Promise<{ files: RunOutcome['files']; notes: string[] }> {
  const log = host.logger;
  try {
    const result = await collectArtifacts({
      workDir: state.workDir,
      artifactDir: spec.artifactDir,
      patterns: spec.artifactPaths,
      exclude: auditFile ? [SCRIPT_NAME, `${HARDENED_TMPDIR_NAME}/`] : [SCRIPT_NAME],
      logs: auditFile ? [{ source: auditFile, name: SECURITY_AUDIT_LOG, first: true }] : [], // the service logs: run-logs.ts
      limits: spec.artifactLimits,
      onRejected: (pattern, reason) => log.warn({ testId: spec.testId, pattern, reason }, 'artifact pattern rejected'),
    });
    if (result.notes.length) log.warn({ testId: spec.testId, notes: result.notes }, 'artifacts left out or cut');
    return result;
  } catch (err) {
    log.error({ testId: spec.testId, err: (err as Error).message }, 'artifact collection failed');
    throw new InfrastructureError(`cannot collect artifacts: ${(err as Error).message}`, { cause: err });
  }
}
