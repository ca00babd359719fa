import { mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { LOG_LEVELS, type LogFn, type Logger, type LogLevel } from './base/logger.js';
import { SECRET_NAME } from './base/secret-names.js';

const MAX_DEPTH = 6;

/** Masks values under keys that look like secrets, at any depth, before anything is written. */
export function redact(value: unknown, depth = 0): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (depth > MAX_DEPTH) return '[truncated]'; // deeper than anything we log on purpose: never unmasked
  if (value instanceof Error) return value;
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value))
    out[k] = SECRET_NAME.test(k) ? '[redacted]' : redact(v, depth + 1);
  return out;
}

export interface LineLoggerOptions {
  level: string;
  /** Appended to (created with its directory when missing); stderr when absent. */
  file?: string;
  /** Keys every line carries, e.g. {host}. */
  base?: Record<string, unknown>;
}

/**
 * The flexvolume executable's logger: the lines pino writes for the daemon (src/log.ts), byte for
 * byte in the same layout — `{"level":30,"time":"<ISO>",<bindings>,<fields>,"msg":"…"}`, secrets
 * masked, an `err` Error as {type, message, stack} — written synchronously, one write per line, so
 * nothing is lost when the process exits right after its reply. Without pino, which a process that
 * lives for one call would spend ~12 ms loading.
 */
export function createLineLogger(opts: LineLoggerOptions): Logger {
  const threshold = levelNumber(opts.level);
  let fd = 2;
  if (opts.file) {
    mkdirSync(dirname(opts.file), { recursive: true });
    fd = openSync(opts.file, 'a');
  }
  const write = (line: string) => {
    writeSync(fd, line);
  };
  return lineLogger(threshold, fragment(opts.base ?? {}), write);
}

function lineLogger(threshold: number, bindings: string, write: (line: string) => void): Logger {
  const at = (level: LogLevel): LogFn => {
    const n = LOG_LEVELS[level];
    if (n < threshold) return () => undefined;
    return (first: object | string, msg?: string) => {
      const fields = typeof first === 'string' ? '' : fragment(redact(first) as Record<string, unknown>);
      const text = typeof first === 'string' ? first : msg;
      const tail = text === undefined ? '' : `,"msg":${JSON.stringify(text)}`;
      write(`{"level":${n},"time":"${new Date().toISOString()}"${bindings}${fields}${tail}}\n`);
    };
  };
  return {
    trace: at('trace'),
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    fatal: at('fatal'),
    child: (more) => lineLogger(threshold, bindings + fragment(more), write),
    flush: () => undefined,
  };
}

/** Unknown level names log everything from info up, as the config only allows pino's names. */
function levelNumber(level: string): number {
  if (level === 'silent') return Number.POSITIVE_INFINITY;
  return (LOG_LEVELS as Record<string, number>)[level] ?? LOG_LEVELS.info;
}

/** `,"k":v,...` for each key whose value JSON can write (undefined, functions: left out, as pino does). */
function fragment(obj: Record<string, unknown>): string {
  let out = '';
  for (const [key, raw] of Object.entries(obj)) {
    const value = key === 'err' && raw instanceof Error ? errorFields(raw) : raw;
    const json = stringify(value);
    if (json !== undefined) out += `,${JSON.stringify(key)}:${json}`;
  }
  return out;
}

function stringify(value: unknown): string | undefined {
  try {
    return JSON.stringify(value);
  } catch {
    return '"[unserializable]"'; // a cycle or a BigInt: the line is still written
  }
}

/** pino's serializer for `err`: the type, message and stack, and the error's own fields. */
function errorFields(err: Error): Record<string, unknown> {
  const own = Object.fromEntries(Object.entries(err));
  return { type: err.constructor?.name ?? 'Error', message: err.message, stack: err.stack, ...own };
}
