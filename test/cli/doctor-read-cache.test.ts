import { describe, expect, it } from 'vitest';
import { readCacheCheck } from '../../src/cli/doctor.js';

/** `stowage doctor`'s line about etcd's read cache, from the store's freshness(). */
describe('doctor: store read cache', () => {
  it('is absent for a store without a read cache (SQLite, or etcd read directly)', () => {
    expect(readCacheCheck(undefined)).toBeUndefined();
    expect(readCacheCheck({ cached: false, stale: false })).toBeUndefined();
  });

  it('passes when the watch is live, naming the revision', () => {
    expect(
      readCacheCheck({
        cached: true,
        stale: false,
        state: 'live',
        revision: 42,
        since: '2026-11-29T10:00:00.000Z',
      }),
    ).toEqual({
      name: 'store read cache',
      ok: true,
      detail: "live at revision 42: Get, Path and List answer from memory, kept current by etcd's watch",
    });
  });

  it('fails when stale, saying since when, why, and what reads do meanwhile', () => {
    const check = readCacheCheck({
      cached: true,
      stale: true,
      state: 'stale',
      revision: 7,
      since: '2026-11-29T10:00:00.000Z',
      reason: 'etcd did not answer the watch for 3001 ms',
    });
    expect(check?.ok).toBe(false);
    expect(check?.detail).toBe(
      "stale since 2026-11-29T10:00:00.000Z: etcd did not answer the watch for 3001 ms; Get and List answer from a copy at revision 7, marked stale until etcd's watch answers (check that etcd is reachable and that the etcd user may watch the prefix)",
    );
  });

  it('fails while the copy could not be loaded: reads go to etcd directly', () => {
    const check = readCacheCheck({
      cached: true,
      stale: false,
      state: 'loading',
      revision: 0,
      since: '2026-11-29T10:00:00.000Z',
      reason: '14 UNAVAILABLE: No connection established',
    });
    expect(check?.ok).toBe(false);
    expect(check?.detail).toMatch(
      /^loading since .*: 14 UNAVAILABLE: No connection established; Get and List go to etcd directly until/,
    );
  });
});
