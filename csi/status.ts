import { status } from '@grpc/grpc-js';
import type { ErrorCode } from '../src/base/errors.js';

/**
 * The gRPC status each StowageError code answers with, as CSI's error tables use them: a sidecar
 * decides from the code alone whether to retry (ABORTED, UNAVAILABLE, DEADLINE_EXCEEDED), give up
 * (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION) or treat the call as done.
 */
const CSI_STATUS: Record<ErrorCode, status> = {
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  NOT_FOUND: status.NOT_FOUND,
  // The core's CONFLICT is "exists with other options": CreateVolume's ALREADY_EXISTS.
  CONFLICT: status.ALREADY_EXISTS,
  // Mounts or attachments elsewhere stand in the way: the CO must first undo them.
  IN_USE: status.FAILED_PRECONDITION,
  // "An operation is pending for the volume": the spec's ABORTED, retried by the sidecars.
  BUSY: status.ABORTED,
  TIMEOUT: status.DEADLINE_EXCEEDED,
  UNAVAILABLE: status.UNAVAILABLE,
  UNKNOWN_DRIVER: status.INVALID_ARGUMENT,
  NOT_SUPPORTED: status.INVALID_ARGUMENT,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
  CONFIG: status.FAILED_PRECONDITION,
  INTERNAL: status.INTERNAL,
};

export function grpcStatusOf(code: ErrorCode): status {
  return CSI_STATUS[code];
}
