import { isStowageError } from '../src/base/errors.js';

/** What kubelet parses: exactly one JSON object on stdout+stderr (flexvolume/README in the spec). */
export interface FlexReply {
  status: 'Success' | 'Failure' | 'Not supported';
  message?: string;
  device?: string;
  volumeName?: string;
  attached?: boolean;
  capabilities?: Record<string, boolean>;
  volumeNewSize?: number;
}

export function success(extra: Omit<FlexReply, 'status'> = {}): FlexReply {
  return { status: 'Success', ...extra };
}

export function notSupported(message: string): FlexReply {
  return { status: 'Not supported', message };
}

/** A failure as the user reads it in `kubectl describe pod`: our message, never a stack. */
export function failureOf(err: unknown): FlexReply {
  if (isStowageError(err)) return { status: 'Failure', message: err.message };
  return { status: 'Failure', message: `internal error: ${(err as Error)?.message ?? String(err)}` };
}

/** Exit code kubelet expects: 0 for Success and Not supported, 1 for Failure. */
export function exitCodeOf(reply: FlexReply): number {
  return reply.status === 'Failure' ? 1 : 0;
}
