import { isStowageError } from '../base/errors.js';
import type { EtcdReadCache } from './etcd-cache.js';
import type { CacheTables } from './etcd-cache-tables.js';

/**
 * Decides, per read, whether the etcd store answers from its read cache or from etcd itself, and
 * makes this process read its own writes:
 *
 * - After a write to a cached key at revision R, `wrote(R)` waits (at most `timeoutMs`) until the
 *   cache has applied R, and remembers R as the floor every later read must see.
 * - A read is answered from the cache when it is live and at or past the floor (waiting for it,
 *   bounded, when it is behind, or for the first load of a store just opened); from etcd when the
 *   cache did not catch up or is loading again after a failure.
 * - While the cache is stale (etcd stopped answering its watch) reads answer from the last copy
 *   at once, so Get and List keep working through an outage; should this process have written
 *   past that copy, etcd is tried first and the copy is the fallback when etcd is unreachable.
 */
export class ReadPath {
  private floor = 0;

  constructor(
    private readonly cache: EtcdReadCache | undefined,
    private readonly timeoutMs: number,
  ) {}

  async wrote(revision: number): Promise<void> {
    const c = this.cache;
    if (!c) return;
    if (revision > this.floor) this.floor = revision;
    // Not while the cache is stale or loading again: reads then check the floor themselves.
    if (c.live || c.firstLoadPending) await c.waitFor(revision, this.timeoutMs);
  }

  async read<T>(fromCache: (tables: CacheTables) => T, direct: () => Promise<T>): Promise<T> {
    const c = this.cache;
    if (!c) return direct();
    // Just opened: the first load is on its way (a few hundred ms at 10,000 volumes); waiting
    // for it beats a read of etcd. Once something failed (etcd down), straight to etcd: it fails fast.
    if (c.firstLoadPending) await c.whenLive(this.timeoutMs);
    if (c.live) {
      if (c.revision >= this.floor || (await c.waitFor(this.floor, this.timeoutMs))) {
        return fromCache(c.tables);
      }
      return direct();
    }
    if (!c.serving) return direct();
    if (c.revision >= this.floor) return fromCache(c.tables);
    try {
      return await direct();
    } catch (err) {
      if (isStowageError(err, 'UNAVAILABLE')) return fromCache(c.tables);
      throw err;
    }
  }
}
