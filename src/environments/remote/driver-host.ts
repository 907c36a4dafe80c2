// The driver host: a small child process that runs an environment driver for the orchestrator.
// Starting a sandbox forks a process; forking from the orchestrator, whose embedded database holds
// hundreds of MB, costs ~20 ms of its main thread per test (5 ms without the database). From this small
// process it costs little, and none of it blocks the API. It exits with its parent: when the IPC
// channel closes, every sandbox is destroyed and the process ends.

import { closeInheritedFds } from '../../infra/inherited-fds';
import { InfrastructureError, type EnvironmentHandle } from '../driver';
import { createDriver } from '../registry';
import type { HostOptions, Reply, Request } from './protocol';

const send = (r: Reply) => {
  if (process.connected) process.send!(r);
};

const logger = {
  info: (obj: Record<string, unknown>, msg: string) => send({ kind: 'log', level: 'info', obj: plain(obj), msg }),
  warn: (obj: Record<string, unknown>, msg: string) => send({ kind: 'log', level: 'warn', obj: plain(obj), msg }),
  error: (obj: Record<string, unknown>, msg: string) => send({ kind: 'log', level: 'error', obj: plain(obj), msg }),
};

function plain(obj: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(obj ?? {}).map(([k, v]) => [k, v instanceof Error ? { message: v.message, stack: v.stack } : v]));
}

// Descriptors the orchestrator inherited from its own parent without O_CLOEXEC (and passed on to
// us) must not reach any sandbox: close them all but the IPC channel, before anything else runs.
const channelFd = (process.channel as unknown as { fd?: number } | undefined)?.fd;
const closedFds = closeInheritedFds(channelFd === undefined ? [] : [channelFd]);
if (closedFds.length) logger.info({ fds: closedFds }, 'driver host: closed descriptors inherited from the orchestrator');

const options = JSON.parse(process.env.ORCH_DRIVER_HOST_OPTIONS ?? '{}') as HostOptions;
const driver = createDriver(options.kind, options.config, { logger });
const handles = new Map<string, EnvironmentHandle>();
const aborts = new Map<number, AbortController>();

async function call(req: Extract<Request, { kind: 'call' }>): Promise<unknown> {
  switch (req.method) {
    case 'preflight':
      return driver.preflight(req.args[0]);
    case 'provision': {
      const controller = new AbortController();
      aborts.set(req.id, controller);
      try {
        const h = await driver.provision(req.args[0], req.args[1], controller.signal);
        handles.set(h.id, h);
        return h;
      } finally {
        aborts.delete(req.id);
      }
    }
    case 'run': {
      const controller = new AbortController();
      aborts.set(req.id, controller);
      try {
        return await driver.run(handles.get(req.args[0].id) ?? req.args[0], {
          ...req.args[1],
          signal: controller.signal,
          onOutput: (stream, chunk) => send({ kind: 'output', id: req.id, stream, data: chunk.toString('base64') }),
        });
      } finally {
        aborts.delete(req.id);
      }
    }
    case 'destroy': {
      const h = handles.get(req.args[0].id) ?? req.args[0];
      handles.delete(h.id);
      return driver.destroy(h);
    }
    case 'reset':
      return driver.reset(handles.get(req.args[0].id) ?? req.args[0]);
    case 'healthCheck':
      return driver.healthCheck(handles.get(req.args[0].id) ?? req.args[0]);
    case 'usage':
      return driver.usage(handles.get(req.args[0].id) ?? req.args[0]);
    case 'close':
      return driver.close?.();
  }
}

process.on('message', (req: Request) => {
  if (req.kind === 'abort') {
    aborts.get(req.id)?.abort(new Error('aborted'));
    return;
  }
  call(req).then(
    (value) => send({ kind: 'result', id: req.id, value: value ?? null }),
    (err: Error) =>
      send({
        kind: 'error', id: req.id, name: err?.name ?? 'Error', message: err?.message ?? String(err), stack: err?.stack,
        ...(err instanceof InfrastructureError && err.files.length ? { files: err.files } : {}),
      }),
  );
});

// the orchestrator is gone (exit, crash, SIGKILL): nothing of ours may outlive it
process.on('disconnect', () => {
  const deadline = setTimeout(() => process.exit(1), 5_000);
  void Promise.allSettled([...handles.values()].map((h) => driver.destroy(h)))
    .then(() => driver.close?.())
    .finally(() => {
      clearTimeout(deadline);
      process.exit(0);
    });
});
process.on('SIGINT', () => undefined); // a Ctrl-C reaches the whole group: the orchestrator decides
process.on('SIGTERM', () => undefined);
