// The BPF programs of the seccomp profiles as files, written once per driver instance into its
// (root-owned) state root, where bwrap's wrapper opens them.

import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildSeccompFilter, type SeccompProfile } from './seccomp';

export class SeccompFiles {
  private readonly files = new Map<SeccompProfile, Promise<string | null>>();

  constructor(
    private readonly stateRoot: string,
    private readonly ensureStateRoot: () => Promise<void>,
  ) {}

  /** The file of `profile`; null: no table for this architecture. A failure is retried next time. */
  get(profile: SeccompProfile): Promise<string | null> {
    let file = this.files.get(profile);
    if (!file) {
      file = (async () => {
        const filter = buildSeccompFilter(profile);
        if (!filter) return null;
        const target = path.join(this.stateRoot, `seccomp-${profile}-${os.arch()}.bpf`);
        await this.ensureStateRoot();
        await fs.writeFile(target, filter, { mode: 0o600 });
        return target;
      })();
      file.catch(() => this.files.delete(profile)); // the caller sees the error; retry next time
      this.files.set(profile, file);
    }
    return file;
  }

  /** Forgets the files (close() removes the state root they are in). */
  clear(): void {
    this.files.clear();
  }
}
