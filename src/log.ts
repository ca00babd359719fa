import { type Logger as PinoLogger, pino } from 'pino';
import { redact } from './log-lines.js';

export type { Logger } from './base/logger.js';
export { redact } from './log-lines.js';

export interface LogOptions {
  level: string;
  /** A file path; logs go to stderr when absent. */
  file?: string;
  /** Base bindings, e.g. {host}. */
  base?: Record<string, unknown>;
  /** Write each line before returning: for short-lived processes that exit right after. */
  sync?: boolean;
}

/**
 * Structured JSON logs with stable keys: op, volume, driver, host. The daemon's and the CLI's; the
 * flexvolume executable writes the same lines without pino (src/log-lines.ts).
 */
export function createLogger(opts: LogOptions): PinoLogger {
  const destination = opts.file
    ? pino.destination({ dest: opts.file, mkdir: true, sync: opts.sync ?? false })
    : pino.destination({ fd: 2, sync: true });
  return pino(
    {
      level: opts.level,
      base: opts.base ?? null,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { log: (obj) => redact(obj) as Record<string, unknown> },
    },
    destination,
  );
}
