import { type ErrorCode, StowageError } from '../base/errors.js';

/**
 * AWS error names -> StowageError codes, in one place. The message keeps AWS's own text (it names
 * the volume, instance or parameter) behind what we were doing.
 */
const CODE_OF: Record<string, ErrorCode> = {
  'InvalidVolume.NotFound': 'NOT_FOUND',
  'InvalidSnapshot.NotFound': 'NOT_FOUND',
  'InvalidInstanceID.NotFound': 'NOT_FOUND',
  'InvalidAttachment.NotFound': 'NOT_FOUND',
  'InvalidVolumeModification.NotFound': 'NOT_FOUND',
  FileSystemNotFound: 'NOT_FOUND',
  MountTargetNotFound: 'NOT_FOUND',
  AccessPointNotFound: 'NOT_FOUND',
  FileSystemInUse: 'IN_USE',
  FileSystemAlreadyExists: 'CONFLICT',
  AccessPointAlreadyExists: 'CONFLICT',
  MountTargetConflict: 'CONFLICT',
  IncorrectFileSystemLifeCycleState: 'CONFLICT',
  SubnetNotFound: 'INVALID_ARGUMENT',
  SecurityGroupNotFound: 'INVALID_ARGUMENT',
  BadRequest: 'INVALID_ARGUMENT',
  AccessPointLimitExceeded: 'UNAVAILABLE',
  FileSystemLimitExceeded: 'UNAVAILABLE',
  InternalServerError: 'UNAVAILABLE',
  VolumeInUse: 'IN_USE',
  IncorrectState: 'CONFLICT',
  IncorrectModificationState: 'BUSY',
  IdempotentParameterMismatch: 'CONFLICT',
  'InvalidVolume.ZoneMismatch': 'INVALID_ARGUMENT',
  'InvalidZone.NotFound': 'INVALID_ARGUMENT',
  InvalidParameterValue: 'INVALID_ARGUMENT',
  InvalidParameterCombination: 'INVALID_ARGUMENT',
  InvalidParameter: 'INVALID_ARGUMENT',
  MissingParameter: 'INVALID_ARGUMENT',
  VolumeLimitExceeded: 'UNAVAILABLE',
  AttachmentLimitExceeded: 'UNAVAILABLE',
  UnauthorizedOperation: 'PERMISSION_DENIED',
  AuthFailure: 'PERMISSION_DENIED',
  RequestLimitExceeded: 'UNAVAILABLE',
  Throttling: 'UNAVAILABLE',
  ThrottlingException: 'UNAVAILABLE',
  ServiceUnavailable: 'UNAVAILABLE',
  Unavailable: 'UNAVAILABLE',
  InternalError: 'UNAVAILABLE',
  TimeoutError: 'UNAVAILABLE',
};

const HINT: Partial<Record<ErrorCode, string>> = {
  PERMISSION_DENIED: ' (check the IAM permissions listed in the README)',
  UNAVAILABLE: ' (AWS did not serve the request; it was retried and can be tried again later)',
};

export function awsErrorName(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { name?: unknown; Code?: unknown; code?: unknown };
  for (const v of [e.Code, e.name, e.code]) if (typeof v === 'string' && v !== 'Error') return v;
  return undefined;
}

/** Wraps an SDK error as a StowageError; a StowageError passes through unchanged. */
export function fromAwsError(err: unknown, doing: string): StowageError {
  if (err instanceof StowageError) return err;
  const name = awsErrorName(err) ?? 'Unknown';
  const networkish = /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|socket hang up/.test(
    String(err),
  );
  const code: ErrorCode = CODE_OF[name] ?? (networkish ? 'UNAVAILABLE' : clientInvalid(err, name));
  const msg = err instanceof Error ? err.message : String(err);
  return new StowageError(code, `${doing} failed: ${name}: ${msg}${HINT[code] ?? ''}`, {
    cause: err,
    details: { awsError: name },
  });
}

/**
 * An error AWS blames on the request that no entry above names (EC2 has hundreds of `Invalid*`
 * codes and adds more): the caller's to fix, so INVALID_ARGUMENT with AWS's own words, not INTERNAL.
 */
function clientInvalid(err: unknown, name: string): ErrorCode {
  const fault = (err as { $fault?: unknown } | null)?.$fault;
  return fault === 'client' && /^(Invalid|Unsupported)/.test(name) ? 'INVALID_ARGUMENT' : 'INTERNAL';
}
