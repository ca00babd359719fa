/**
 * The latency buckets of stowage_request_duration_seconds (upper bounds in seconds): a cached
 * Docker List (~0.1 ms) to a Mount that waits on a backend (≤ 2 min). Here in src/base, not in
 * src/metrics, because the doors that cannot serve metrics themselves (the flexvolume executable,
 * the CLI) sort each request into its bucket before recording it in the store, and they never load
 * src/metrics.
 */
export const REQUEST_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
] as const;

/** The bucket above every bound, as Prometheus writes it. */
export const INF_BUCKET = '+Inf';

/**
 * The bucket a request of `seconds` falls in, as Prometheus writes its `le` label: the smallest
 * bound it does not exceed (`"0.005"`), or `"+Inf"` past the last one.
 */
export function requestBucket(seconds: number, bounds: readonly number[] = REQUEST_BUCKETS): string {
  for (const bound of bounds) if (seconds <= bound) return String(bound);
  return INF_BUCKET;
}

/** The upper bound a bucket label stands for (Infinity for `+Inf`); NaN for anything else. */
export function bucketBound(le: string): number {
  return le === INF_BUCKET ? Number.POSITIVE_INFINITY : le.trim() === '' ? Number.NaN : Number(le);
}
