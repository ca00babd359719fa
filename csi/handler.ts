import { type handleUnaryCall, Metadata, type ServerErrorResponse, status } from '@grpc/grpc-js';
import { type ErrorCode, isStowageError, StowageError, toStowageError } from '../src/base/errors.js';
import type { Logger } from '../src/base/logger.js';
import { grpcStatusOf } from './status.js';

/** A CSI RPC as this door writes it: the request in, the response out, StowageError on failure. */
export type Rpc<Req, Res> = (req: Req) => Promise<Res>;

/** Hears each answered call: its method, the StowageError code it failed with or OK, and its time. */
export type CallObserver = (method: string, code: string, seconds: number) => void;

/**
 * Wraps one RPC for grpc-js: the error type of stowage becomes the spec's gRPC status (with the
 * message that says what to do), anything else INTERNAL; every call is logged by method and
 * volume id with its duration — never its secrets or volume context, which may hold credentials.
 * A call the CO gave up on (deadline, cancel) still runs to its end: every step below is
 * idempotent and journalled, so the CO's retry finds the work done or in progress (ABORTED).
 */
export function unary<Req, Res>(
  method: string,
  rpc: Rpc<Req, Res>,
  log: Logger,
  observe?: CallObserver,
): handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const started = performance.now();
    const req = call.request;
    const volumeId = volumeIdOf(method, req);
    rpc(req).then(
      (res) => {
        const seconds = (performance.now() - started) / 1000;
        log.debug({ method, volumeId, ms: Math.round(seconds * 1000) }, 'CSI call');
        callback(null, res);
        // Counted after the reply is on its way: recording is a store write the CO need not wait for.
        observe?.(method, 'OK', seconds);
      },
      (err: unknown) => {
        const seconds = (performance.now() - started) / 1000;
        const e = isStowageError(err) ? err : toStowageError(err, `CSI ${method}`);
        const level = e.code === 'INTERNAL' ? 'error' : 'info';
        log[level](
          { method, volumeId, code: e.code, err: e.message, ms: Math.round(seconds * 1000) },
          'CSI call failed',
        );
        callback(grpcError(e));
        observe?.(method, e.code, seconds);
      },
    );
  };
}

/** A StowageError as grpc-js sends it. */
export function grpcError(e: StowageError): ServerErrorResponse {
  const err = new Error(e.message) as ServerErrorResponse;
  err.code = csiStatusOf(e) ?? grpcStatusOf(e.code);
  err.details = e.message;
  err.metadata = new Metadata();
  return err;
}

/**
 * A StowageError that answers with a status of CSI's own, one no StowageError code stands for
 * (OUT_OF_RANGE, RESOURCE_EXHAUSTED): `code` is what the other doors would make of it.
 */
export function csiError(
  grpcStatus: status,
  code: ErrorCode,
  message: string,
  opts: { cause?: unknown } = {},
): StowageError {
  return new StowageError(code, message, { ...opts, details: { csiStatus: grpcStatus } });
}

function csiStatusOf(e: StowageError): status | undefined {
  const s = e.details.csiStatus;
  return typeof s === 'number' ? (s as status) : undefined;
}

/**
 * The error for an RPC this plugin does not offer for its driver (it is not in the capabilities it
 * advertises): the spec's UNIMPLEMENTED, which tells the CO not to retry.
 */
export function unimplemented(method: string, why: string): StowageError {
  return csiError(status.UNIMPLEMENTED, 'NOT_SUPPORTED', `${method} is not supported: ${why}`);
}

/**
 * A request the spec answers with FAILED_PRECONDITION where stowage's codes have no such meaning:
 * the CO must first do something else (stage before publish; a single-node volume asked for on
 * many nodes). The CO does not retry it as it is.
 */
export function failedPrecondition(message: string): StowageError {
  return csiError(status.FAILED_PRECONDITION, 'INVALID_ARGUMENT', message);
}

/** The volume a call is about, for its log line: CreateSnapshot's `name` is a snapshot's, not a volume's. */
function volumeIdOf(method: string, req: unknown): string | undefined {
  if (typeof req !== 'object' || req === null) return undefined;
  const r = req as { volumeId?: unknown; sourceVolumeId?: unknown; name?: unknown };
  const named = method === 'CreateVolume' ? r.name : r.sourceVolumeId;
  const id = typeof r.volumeId === 'string' && r.volumeId !== '' ? r.volumeId : named;
  return typeof id === 'string' && id !== '' ? id.slice(0, 200) : undefined;
}
