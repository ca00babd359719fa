import { SqliteStore } from '../../src/state/sqlite-store.js';

/**
 * A real SQLite store that tells the test when a lock was refused: the caller then backs off and
 * polls, so the test knows the other party is now waiting and can release what it holds.
 */
export class ObservedStore extends SqliteStore {
  private waiters: (() => void)[] = [];
  private resolveFirst!: () => void;
  /** How many tryLock calls were refused so far. */
  refusals = 0;
  /** Resolves at the first refused tryLock of this store's life (even one before the test asked). */
  readonly firstRefusal = new Promise<void>((r) => (this.resolveFirst = r));

  /** Resolves at the next refused tryLock. */
  nextRefusal(): Promise<void> {
    return new Promise((r) => this.waiters.push(r));
  }

  override async tryLock(key: string, owner: string, ttlMs: number) {
    const res = await super.tryLock(key, owner, ttlMs);
    if (!res.acquired) {
      this.refusals++;
      this.resolveFirst();
      for (const w of this.waiters.splice(0)) w();
    }
    return res;
  }
}
