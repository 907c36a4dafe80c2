import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { bestEffort } from '../../infra/best-effort';
import {
  InfrastructureError,
  type DriverCapabilities,
  type EnvironmentDriver,
  type EnvironmentHandle,
  type EnvironmentKind,
  type EnvironmentShape,
  type HealthStatus,
  type ResourceUsage,
  type RunOutcome,
  type RunSpec,
} from '../driver';
import { parseDriverConfig } from '../registry';
import type { HostOptions, Method, Reply, Request } from './protocol';

interface Logger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: Error): void;
  onOutput?: RunSpec['onOutput'];
}

/**
 * What the driver host may see of the orchestrator's environment: what finding programs, temp dirs
 * and building an image need (PATH, HOME, TMPDIR, the locale, a Debian mirror and proxies), never
 * the rest (DATABASE_URL and REDIS_URL carry passwords; the host needs neither).
 */
export const DRIVER_HOST_ENV_NAMES = [
  'PATH', 'HOME', 'TMPDIR', 'LANG', 'LC_ALL', 'TZ', 'DEBIAN_MIRROR',
  'http_proxy', 'https_proxy', 'no_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY',
] as const;

export function driverHostEnv(parent: NodeJS.ProcessEnv, host: HostOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const name of DRIVER_HOST_ENV_NAMES) if (parent[name] !== undefined) env[name] = parent[name];
  env.ORCH_DRIVER_HOST_OPTIONS = JSON.stringify(host);
  return env;
}

/**
 * An environment driver of any kind that runs in a driver host child process (see driver-host.ts), so
 * that forking sandboxes never blocks the orchestrator's main thread. Same interface, same conformance
 * suite. The configuration section is validated here (a bad one fails at once, not in the child).
 */
export class RemoteDriver implements EnvironmentDriver {
  private child: ChildProcess | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly host: HostOptions;
  readonly capabilities: DriverCapabilities;

  constructor(
    readonly kind: EnvironmentKind,
    config: unknown,
    private readonly logger: Logger,
  ) {
    const { factory, config: parsed } = parseDriverConfig(kind, config);
    this.capabilities = factory.capabilities(parsed);
    this.host = { kind, config: parsed };
  }

  private start(): ChildProcess {
    if (this.child) return this.child;
    const child = fork(join(__dirname, 'driver-host.js'), [], {
      env: driverHostEnv(process.env, this.host),
      execArgv: [],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
    });
    child.on('message', (m: Reply) => this.onReply(m));
    child.on('exit', (code, signal) => {
      this.child = null;
      const err = new InfrastructureError(`the sandbox driver process ended (${signal ?? `exit code ${code}`})`);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
      if (!this.closing) this.logger.error({ code, signal }, 'sandbox driver process ended');
    });
    child.on('error', (err) => this.logger.error({ err }, 'sandbox driver process error'));
    this.child = child;
    return child;
  }

  private closing = false;

  /** The driver host's pid while it runs (diagnostics: benchmarks read its CPU time). */
  get hostPid(): number | undefined {
    return this.child?.pid;
  }

  private onReply(m: Reply): void {
    if (m.kind === 'log') {
      this.logger[m.level](m.obj, m.msg);
      return;
    }
    const p = this.pending.get(m.id);
    if (!p) return;
    if (m.kind === 'output') {
      p.onOutput?.(m.stream, Buffer.from(m.data, 'base64'));
      return;
    }
    this.pending.delete(m.id);
    if (m.kind === 'result') p.resolve(m.value);
    else {
      const err = m.name === 'InfrastructureError' ? new InfrastructureError(m.message, { files: m.files }) : new Error(m.message);
      if (m.stack) err.stack = m.stack;
      p.reject(err);
    }
  }

  private call<T>(method: Method, args: unknown[], extra: { onOutput?: RunSpec['onOutput']; signal?: AbortSignal } = {}): Promise<T> {
    // closed: a late call (a reset that ends after the worker stopped) must not start a host again,
    // which nothing would ever close
    if (this.closing && !(method === 'close' && this.child)) return Promise.reject(new InfrastructureError(`the ${this.kind} driver is closed`));
    const child = this.start();
    const id = this.nextId++;
    const signal = extra.signal;
    const onAbort = () => child.connected && child.send({ kind: 'abort', id } satisfies Request);
    return new Promise<T>((resolve, reject) => {
      // a long-lived signal (a worker's) must not keep one listener per call
      const settle = <A>(fn: (a: A) => void) => (a: A) => {
        signal?.removeEventListener('abort', onAbort);
        fn(a);
      };
      this.pending.set(id, { resolve: settle(resolve as (v: unknown) => void), reject: settle(reject), onOutput: extra.onOutput });
      if (signal) {
        if (signal.aborted) queueMicrotask(onAbort);
        else signal.addEventListener('abort', onAbort, { once: true });
      }
      child.send({ kind: 'call', id, method, args } as Request, (err) => {
        if (!err) return;
        this.pending.delete(id);
        reject(new InfrastructureError(`cannot reach the sandbox driver process: ${err.message}`));
      });
    });
  }

  preflight(shape: EnvironmentShape): Promise<void> {
    return this.call('preflight', [shape]);
  }
  provision(id: string, shape: EnvironmentShape, signal?: AbortSignal): Promise<EnvironmentHandle> {
    return this.call('provision', [id, shape], { signal });
  }
  run(env: EnvironmentHandle, spec: RunSpec): Promise<RunOutcome> {
    const { onOutput, signal, ...plain } = spec;
    return this.call('run', [env, plain], { onOutput, signal });
  }
  reset(env: EnvironmentHandle): Promise<void> {
    return this.call('reset', [env]);
  }
  healthCheck(env: EnvironmentHandle): Promise<HealthStatus> {
    return this.call('healthCheck', [env]);
  }
  usage(env: EnvironmentHandle): Promise<ResourceUsage | null> {
    return this.call('usage', [env]);
  }
  destroy(env: EnvironmentHandle): Promise<void> {
    return this.call('destroy', [env]);
  }

  async close(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.closing = true;
    await bestEffort(this.logger, 'closing the driver in its host process', () => this.call('close', []));
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.disconnect(); // the host destroys what is left and exits
      setTimeout(() => {
        child.kill('SIGKILL');
        resolve();
      }, 5_000).unref();
    });
  }
}
