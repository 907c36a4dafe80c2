import pino, { type Logger } from 'pino';

export function createLogger(level: string, name = 'orchestrator'): Logger {
  return pino({ name, level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
}
