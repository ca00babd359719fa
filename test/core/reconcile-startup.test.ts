import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { registerBuiltins } from '../../drivers/index.js';
import { StowageError } from '../../src/base/errors.js';
import type { Driver } from '../../src/core/driver.js';
import { parseOptions } from '../../src/core/options.js';
import { DriverRegistry } from '../../src/core/registry.js';
import { SqliteStore } from '../../src/state/sqlite-store.js';
import {
  createTestRuntime,
  TEST_HOST,
  type TestRuntime,
  type TestRuntimeOptions,
} from '../helpers/runtime.js';

/**
 * reconcile() as a daemon runs it now: it serves its sockets before reconcile is done, and several
 * daemons (one per driver) may share a store on one host. Each settles only its own drivers'
 * volumes, and requests served meanwhile are not undone.
 */

const ID_A = `a1${'0'.repeat(62)}`;
const ID_B = `b2${'0'.repeat(62)}`;

let runtimes: TestRuntime[] = [];

afterEach(async () => {
  // Second runtimes of a host first: the first one deletes the shared temp directory.
  for (const rt of runtimes.reverse()) await rt.cleanup();
  runtimes = [];
});

async function runtime(opts: TestRuntimeOptions = {}): Promise<TestRuntime> {
  const rt = await createTestRuntime(opts);
  runtimes.push(rt);
  return rt;
}

/** A driver that mounts nothing: its volumes' records are set up by hand in the store. */
function otherDriver(): Driver & { unmounted: string[] } {
  const unmounted: string[] = [];
  return {
    name: 'other',
    scope: 'global',
    needsAttach: false,
    lazyUnmount: false,
    optionSpecs: {},
    unmounted,
    parseOptions: (raw) => parseOptions('other', {}, raw),
    provision: async () => ({ fields: {}, adopted: false, removePolicy: 'delete' }),
    destroy: async () => undefined,
    abandon: async () => undefined,
    detach: async (v) => {
      unmounted.push(v.name);
    },
    mountSpec: () => {
      throw new StowageError('NOT_SUPPORTED', 'the other driver does not mount');
    },
    describe: () => ({}),
  };
}

/** Registry with the built-in drivers and `other`; which are enabled is the runtime's `drivers`. */
async function registryWithOther(other: Driver): Promise<DriverRegistry> {
  const registry = new DriverRegistry();
  await registerBuiltins(registry);
  registry.register('other', () => other);
  return registry;
}

/** A store that records which volume locks it was asked for. */
class LockRecordingStore extends SqliteStore {
  readonly locked: string[] = [];
  override async tryLock(key: string, owner: string, ttlMs: number) {
    this.locked.push(key);
    return super.tryLock(key, owner, ttlMs);
  }
}

describe('DriverRegistry.isEnabled', () => {
  it('is true for built (enabled) drivers only, and never throws', async () => {
    const registry = await registryWithOther(otherDriver());
    registry.enable(['other'], () => ({}) as never);
    expect(registry.isEnabled('other')).toBe(true);
    expect(registry.isEnabled('local')).toBe(false); // registered, not enabled
    expect(registry.isEnabled('nope')).toBe(false); // unknown
  });
});

describe('reconcile() with daemons per driver sharing a store', () => {
  it("leaves another driver's volumes, records and intents alone, and does not even lock them", async () => {
    const other = otherDriver();
    let observed: LockRecordingStore | undefined;
    // The `local` daemon, and on the same host and store the `other` driver's daemon.
    const local = await runtime({
      registry: await registryWithOther(other),
      store: (path) => (observed = new LockRecordingStore(path)),
    });
    const theirs = await runtime({
      sameHostAs: local,
      registry: await registryWithOther(other),
      flags: { drivers: ['other'] },
    });
    expect(local.runtime.registry.isEnabled('other')).toBe(false);
    expect(theirs.runtime.registry.isEnabled('local')).toBe(false);

    // Ours: mounted, then lost by the kernel (host restarted).
    await local.manager.create('local', 'v1', {});
    await local.manager.mount('local', 'v1', ID_A);
    local.mounter.vanish(join(local.config.mountRoot, 'v1'));
    // Theirs: the same kind of stale mount record, an attachment, and an interrupted mount intent.
    await theirs.manager.create('other', 'o1', {});
    const now = new Date().toISOString();
    const mountpoint = join(local.config.mountRoot, 'o1');
    await theirs.store.putMount({
      volume: 'o1',
      host: TEST_HOST,
      mountpoint,
      refs: { [ID_A]: 1 },
      state: 'mounted',
      updatedAt: now,
    });
    await theirs.store.putAttachment({
      volume: 'o1',
      host: TEST_HOST,
      device: 'o1-dev',
      state: 'attached',
      updatedAt: now,
    });
    const intent = await theirs.store.beginIntent({
      volume: 'o1',
      host: TEST_HOST,
      op: 'mount',
      details: { id: ID_B, target: mountpoint },
    });
    const before = {
      mounts: await local.store.getMounts('o1'),
      attachments: await local.store.getAttachments('o1'),
    };
    observed!.locked.length = 0;

    expect(await local.manager.reconcile()).toEqual({
      actions: ['v1 had 1 mount(s) recorded but is not mounted (host restarted?): records dropped'],
    });
    expect(observed!.locked).not.toContain('volume/o1');
    expect(await local.store.getMounts('o1')).toEqual(before.mounts);
    expect(await local.store.getAttachments('o1')).toEqual(before.attachments);
    expect((await local.store.listIntents(TEST_HOST)).map((i) => i.id)).toEqual([intent]);
    expect(other.unmounted).toEqual([]);
    // Ours is settled as before.
    expect(await local.store.getMounts('v1')).toEqual([]);
    expect(local.loop.attached()).toEqual([]);

    // The other daemon settles its own.
    expect(await theirs.manager.reconcile()).toEqual({
      actions: [
        'interrupted mount of o1: state checked',
        'o1 had 1 mount(s) recorded but is not mounted (host restarted?): records dropped',
      ],
    });
    expect(await theirs.store.getMounts('o1')).toEqual([]);
    expect(await theirs.store.getAttachments('o1')).toEqual([]);
    expect(await theirs.store.listIntents(TEST_HOST)).toEqual([]);
    expect(other.unmounted).toEqual(['o1']);
  });

  it('still drops leftovers of a volume whose record is gone, whatever its driver was', async () => {
    const t = await runtime();
    const now = new Date().toISOString();
    await t.store.putAttachment({
      volume: 'ghost',
      host: TEST_HOST,
      device: 'x',
      state: 'attached',
      updatedAt: now,
    });
    expect(await t.manager.reconcile()).toEqual({ actions: ['ghost: attachment without a mount released'] });
    expect(await t.store.getAttachments('ghost')).toEqual([]);
  });
});

/** A store that runs `between` right after reconcile has listed this host's attachments. */
class PausingStore extends SqliteStore {
  between: (() => Promise<void>) | undefined;
  override async listAttachmentsByHost(host: string) {
    const res = await super.listAttachmentsByHost(host);
    const run = this.between;
    this.between = undefined;
    await run?.();
    return res;
  }
}

describe('reconcile() while requests are served', () => {
  it('does not release an attachment that a Mount served meanwhile is using', async () => {
    let store: PausingStore | undefined;
    const t = await runtime({ store: (path) => (store = new PausingStore(path)) });
    const vol = await t.manager.create('local', 'v1', {});
    const target = join(t.config.mountRoot, 'v1');
    // Attached but not mounted (a crash in between): reconcile would release it...
    const device = await t.loop.attach(join(t.config.local.imageDir, 'v1.img'));
    await t.store.putAttachment({
      volume: vol.name,
      host: TEST_HOST,
      device,
      state: 'attached',
      updatedAt: new Date().toISOString(),
    });
    // ...but Docker's Mount arrives after reconcile listed the attachments, before it got the lock.
    store!.between = async () => {
      expect(await t.manager.mount('local', 'v1', ID_A)).toBe(target);
    };

    expect(await t.manager.reconcile()).toEqual({ actions: [] });
    expect(t.mounter.table.get(target)?.source).toBe(device);
    expect((await t.store.getMounts('v1'))[0]?.refs).toEqual({ [ID_A]: 1 });
    expect(t.loop.attached()).toEqual([[device, join(t.config.local.imageDir, 'v1.img')]]);
  });

  it('a Mount before reconcile, of a volume the kernel lost, starts afresh instead of trusting stale records', async () => {
    const t = await runtime();
    const image = (name: string) => join(t.config.local.imageDir, `${name}.img`);
    await t.manager.create('local', 'v1', {});
    await t.manager.create('local', 'v2', {});
    await t.manager.mount('local', 'v1', ID_A);
    expect(t.loop.attached()).toEqual([['/dev/loop0', image('v1')]]);

    // The host restarts: no mounts, no loop devices; the records still say mounted on /dev/loop0.
    t.mounter.vanish(join(t.config.mountRoot, 'v1'));
    await t.loop.detach('/dev/loop0');
    // The first Mount after the restart is v2's, which gets /dev/loop0 now.
    await t.manager.mount('local', 'v2', ID_A);
    expect(t.loop.attached()).toEqual([['/dev/loop0', image('v2')]]);

    // v1's Mount arrives before reconcile: it must not mount v2's device, nor keep the old reference.
    await t.manager.mount('local', 'v1', ID_B);
    expect(t.mounter.table.get(join(t.config.mountRoot, 'v1'))?.source).toBe('/dev/loop1');
    expect(t.loop.attached()).toEqual([
      ['/dev/loop0', image('v2')],
      ['/dev/loop1', image('v1')],
    ]);
    expect((await t.store.getMounts('v1'))[0]?.refs).toEqual({ [ID_B]: 1 });
    expect((await t.store.getAttachments('v1'))[0]?.device).toBe('/dev/loop1');
    // Reconcile, when it comes, finds nothing to do; v1 is removable after its one unmount.
    expect(await t.manager.reconcile()).toEqual({ actions: [] });
    await t.manager.unmount('local', 'v1', ID_B);
    await t.manager.remove('local', 'v1');
    expect(await t.store.getVolume('v1')).toBeUndefined();
  });
});
