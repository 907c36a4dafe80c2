// Messages between RemoteDriver (in the orchestrator) and its driver host (a small child process).

import type { EnvironmentShape, EnvironmentHandle, OutputStream, RunSpec } from '../driver';

export type Method = 'preflight' | 'provision' | 'run' | 'reset' | 'healthCheck' | 'usage' | 'destroy' | 'close';

export type Request =
  | { kind: 'call'; id: number; method: 'preflight'; args: [EnvironmentShape] }
  | { kind: 'call'; id: number; method: 'provision'; args: [string, EnvironmentShape] }
  | { kind: 'call'; id: number; method: 'run'; args: [EnvironmentHandle, Omit<RunSpec, 'onOutput' | 'signal'>] }
  | { kind: 'call'; id: number; method: 'reset' | 'healthCheck' | 'usage' | 'destroy'; args: [EnvironmentHandle] }
  | { kind: 'call'; id: number; method: 'close'; args: [] }
  /** Aborts the run of call `id` (RunSpec.signal). */
  | { kind: 'abort'; id: number };

export type Reply =
  | { kind: 'result'; id: number; value: unknown }
  | { kind: 'error'; id: number; name: string; message: string; stack?: string }
  | { kind: 'output'; id: number; stream: OutputStream; data: string }
  | { kind: 'log'; level: 'info' | 'warn' | 'error'; obj: Record<string, unknown>; msg: string };

/** Options of the driver the host runs (JSON-safe). */
export interface HostOptions {
  driver: 'container';
  options: Record<string, unknown>;
}
