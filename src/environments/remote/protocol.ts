// Messages between RemoteDriver (in the orchestrator) and its driver host (a small child process).

import type { CollectedFile, EnvironmentHandle, EnvironmentKind, EnvironmentShape, OutputStream, RunSpec } from '../driver';

export type Method = 'preflight' | 'provision' | 'run' | 'reset' | 'healthCheck' | 'usage' | 'destroy' | 'close';

export type Request =
  | { kind: 'call'; id: number; method: 'preflight'; args: [EnvironmentShape] }
  /** Aborting the call (an `abort` message) aborts the provisioning (its AbortSignal). */
  | { kind: 'call'; id: number; method: 'provision'; args: [string, EnvironmentShape] }
  | { kind: 'call'; id: number; method: 'run'; args: [EnvironmentHandle, Omit<RunSpec, 'onOutput' | 'signal'>] }
  | { kind: 'call'; id: number; method: 'reset' | 'healthCheck' | 'usage' | 'destroy'; args: [EnvironmentHandle] }
  | { kind: 'call'; id: number; method: 'close'; args: [] }
  /** Aborts call `id`: a run (RunSpec.signal) or a provisioning. */
  | { kind: 'abort'; id: number };

export type Reply =
  | { kind: 'result'; id: number; value: unknown }
  | { kind: 'error'; id: number; name: string; message: string; stack?: string; files?: CollectedFile[] }
  | { kind: 'output'; id: number; stream: OutputStream; data: string }
  | { kind: 'log'; level: 'info' | 'warn' | 'error'; obj: Record<string, unknown>; msg: string };

/**
 * The driver the host runs: its kind and its configuration section (JSON-safe), which the host
 * validates with that driver's schema (registry.ts) before it makes the driver.
 */
export interface HostOptions {
  kind: EnvironmentKind;
  config: unknown;
}
