import { join } from 'node:path';
import { expect, it } from 'vitest';
import { ObservedStore } from '../helpers/observed-store.js';
import { createTestRuntime } from '../helpers/runtime.js';

it('reconcile() does not undo a mount that another process on this host finished meanwhile', async () => {
  // Process 1 (e.g. the old daemon, or a flexvolume call) mounts v1; process 2 (a daemon starting) reconciles.
  const p1 = await createTestRuntime();
  let observed: ObservedStore | undefined;
  const p2 = await createTestRuntime({
    sameHostAs: p1,
    store: (path) => (observed = new ObservedStore(path)),
  });
  try {
    await p1.manager.create('local', 'v1', {});
    const target = join(p1.config.mountRoot, 'v1');
    const gate = p1.mounter.holdNext('mount', target);
    const mounting = p1.manager.mount('local', 'v1', 'a'.repeat(64));
    await gate.reached; // p1 holds v1's lock; its 'mount' intent is in the journal

    const reconciling = p2.manager.reconcile();
    await observed?.firstRefusal; // p2 has read the journal and waits for v1's lock
    gate.release();
    expect(await mounting).toBe(target);
    await reconciling;

    // The container that just mounted v1 must still have it.
    expect(p1.mounter.table.has(target)).toBe(true);
    expect((await p1.store.getMounts('v1'))[0]?.refs).toEqual({ ['a'.repeat(64)]: 1 });
  } finally {
    await p2.cleanup();
    await p1.cleanup();
  }
});
