/**
 * The errors a test asks a fake AWS endpoint to answer instead of doing the work: queued per
 * operation (or '*' for any), each for its next `times` calls, in the order they were asked for.
 * The endpoints share this bookkeeping; what a failure looks like on the wire stays in each fake.
 */
export class InjectedFailures<F extends { times?: number }> {
  private readonly queues = new Map<string, F[]>();

  /** The next `times` (default 1) calls of `operation` ('*' for any) fail with `failure`. */
  add(operation: string, failure: F): void {
    const queue = this.queues.get(operation) ?? [];
    queue.push({ ...failure, times: failure.times ?? 1 });
    this.queues.set(operation, queue);
  }

  /** The failure due for this call of `operation` (one asked for it by name first, then '*'). */
  take(operation: string): F | undefined {
    for (const key of [operation, '*']) {
      const queue = this.queues.get(key);
      const head = queue?.[0];
      if (!queue || !head) continue;
      head.times = (head.times ?? 1) - 1;
      if (head.times <= 0) queue.shift();
      return head;
    }
    return undefined;
  }
}
