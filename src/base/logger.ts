/**
 * What stowage logs through: structured lines with stable keys (op, volume, driver, host). The
 * daemon and the CLI log through pino (src/log.ts); the flexvolume executable, which kubelet starts
 * once per call, through a small synchronous writer of the same lines (src/log-lines.ts), since
 * loading pino alone costs it ~12 ms. Both satisfy this interface; nothing else of them is used.
 */
export interface LogFn {
  (obj: object, msg?: string): void;
  (msg: string): void;
}

export interface Logger {
  trace: LogFn;
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  fatal: LogFn;
  /** A logger whose lines carry these keys too. */
  child(bindings: Record<string, unknown>): Logger;
  /** Writes out what is buffered (nothing, for a synchronous writer). */
  flush(): void;
}

/** pino's level numbers, which the lines carry as `level`. */
export const LOG_LEVELS = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const;
export type LogLevel = keyof typeof LOG_LEVELS;
