import { type Logger, pino } from 'pino';

const SECRET_KEY = /secret|password|passwd|token|credential|authorization|apikey|privatekey|accesskey/i;
const MAX_DEPTH = 6;

/** Masks values under keys that look like secrets, at any depth, before anything is written. */
export function redact(value: unknown, depth = 0): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (depth > MAX_DEPTH) return '[truncated]'; // deeper than anything we log on purpose: never unmasked
  if (value instanceof Error) return value;
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value))
    out[k] = SECRET_KEY.test(k) ? '[redacted]' : redact(v, depth + 1);
  return out;
}

export interface LogOptions {
  level: string;
  /** A file path; logs go to stderr when absent. */
  file?: string;
  /** Base bindings, e.g. {host}. */
  base?: Record<string, unknown>;
  /** Write each line before returning: for short-lived processes that exit right after. */
  sync?: boolean;
}

/** Structured JSON logs with stable keys: op, volume, driver, host. */
export function createLogger(opts: LogOptions): Logger {
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
