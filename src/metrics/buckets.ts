import { REQUEST_BUCKETS } from '../base/request-buckets.js';

/**
 * Histogram buckets (upper bounds in seconds), one set per kind of wait. A Docker Get or List is
 * answered in well under a millisecond, a Mount of a fresh image in tens of milliseconds, an EBS
 * attach in seconds; each set spans what its kind of wait really takes here, plus its deadline's
 * order of magnitude, so a stuck wait still lands in a bucket of its own.
 */
export const BUCKETS = {
  /** Requests of every door: src/base/request-buckets.ts (the doors that record in the store use them too). */
  request: REQUEST_BUCKETS,
  /** AWS API calls: tens of milliseconds, seconds under throttling and retries. */
  cloud: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
  /** Attach, device wait, mount: a loop device in milliseconds, an EBS attach in seconds. */
  attach: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
  /** Volume locks: free at once, or waited for up to timeouts.lockWaitMs (10 s by default). */
  lock: [0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30],
  /** Store calls: SQLite in tens of microseconds, etcd in milliseconds, an unreachable one at its deadline. */
  store: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
} as const satisfies Record<string, readonly number[]>;
