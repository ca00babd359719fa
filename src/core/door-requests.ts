import { toStowageError } from '../base/errors.js';
import type { Logger } from '../base/logger.js';
import { requestBucket } from '../base/request-buckets.js';
import type { StateStore } from '../state/store.js';

/**
 * The doors whose process ends with its call (kubelet runs the flexvolume executable once per
 * call; a `stowage` command runs once), so they cannot serve /metrics: they record each request in
 * the store, and the daemon of the same host shows them next to its own Docker requests. The CSI
 * plugin records the same way: it is a process of its own beside the daemon, and one /metrics per
 * host (the daemon's, on metrics.listen) shows every door.
 */
export type RecordingDoor = 'flexvolume' | 'cli' | 'csi';

export interface DoorRequest {
  door: RecordingDoor;
  driver: string;
  operation: string;
  /** `OK`, or the code of the error the request failed with (see resultCode). */
  code: string;
  seconds: number;
}

/** Past this a record is given up: counting a request must not hold up the reply it counts. */
const RECORD_DEADLINE_MS = 1000;

/** `OK` for a request that succeeded (no error), else the StowageError code it failed with. */
export function resultCode(error?: unknown): string {
  return error === undefined ? 'OK' : toStowageError(error).code;
}

/**
 * Records requests of a RecordingDoor in the store: one write per request, after its answer is
 * decided. Never fails: the request's own outcome stands whatever happens here, so a record that
 * fails or outlasts RECORD_DEADLINE_MS is dropped with a debug line (the request is then missing
 * from the daemon's counts, which the store's own failure metrics of the daemon may explain).
 */
export class DoorRequests {
  constructor(private readonly d: { store: StateStore; host: string; log: Logger; deadlineMs?: number }) {}

  async record(r: DoorRequest): Promise<void> {
    const sample = { ...r, le: requestBucket(r.seconds) };
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), this.d.deadlineMs ?? RECORD_DEADLINE_MS);
    });
    try {
      const written = this.d.store.recordRequest(this.d.host, sample);
      written.catch(() => undefined); // when given up, its late failure is no one's concern
      if ((await Promise.race([written, late])) === 'late') {
        this.d.log.debug({ request: sample }, 'request not counted: the store did not answer in time');
      }
    } catch (err) {
      this.d.log.debug({ request: sample, err: (err as Error).message }, 'request not counted');
    } finally {
      clearTimeout(timer);
    }
  }
}
