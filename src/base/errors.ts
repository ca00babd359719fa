/**
 * The one error type of stowage. Everything below the adapters throws a StowageError with a code
 * from this closed set; the adapters (Docker routes, flexvolume, CLI) are the only places that
 * translate it into their protocol. Anything else that escapes is wrapped as INTERNAL.
 */
export const ERROR_CODES = [
  'INVALID_ARGUMENT', // bad name, unknown/malformed option, malformed request
  'NOT_FOUND', // the volume (or other object) does not exist
  'CONFLICT', // exists with different options / belongs to another driver
  'IN_USE', // refused because mounts or attachments exist
  'BUSY', // another operation holds the volume; retry later
  'TIMEOUT', // an external step did not finish within its deadline
  'UNAVAILABLE', // a dependency (tool, server, store) cannot be reached
  'UNKNOWN_DRIVER', // driver name not registered / not enabled
  'NOT_SUPPORTED', // the driver cannot do this operation
  'PERMISSION_DENIED', // not root, path outside stowage's directories
  'CONFIG', // configuration file/env/flags invalid
  'INTERNAL', // a bug or an unexpected failure of a tool
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface StowageErrorOptions {
  cause?: unknown;
  retryable?: boolean;
  details?: Record<string, unknown>;
}

const RETRYABLE_BY_DEFAULT: ReadonlySet<ErrorCode> = new Set(['BUSY', 'TIMEOUT', 'UNAVAILABLE']);

export class StowageError extends Error {
  override readonly name = 'StowageError';
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, opts: StowageErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.retryable = opts.retryable ?? RETRYABLE_BY_DEFAULT.has(code);
    this.details = opts.details ?? {};
  }
}

export function isStowageError(err: unknown, code?: ErrorCode): err is StowageError {
  return err instanceof StowageError && (code === undefined || err.code === code);
}

/** Wraps anything thrown into a StowageError, keeping an existing one as it is. */
export function toStowageError(err: unknown, context?: string): StowageError {
  if (err instanceof StowageError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  return new StowageError('INTERNAL', context ? `${context}: ${msg}` : msg, { cause: err });
}
