import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { registerBuiltins } from '../../drivers/index.js';
import { StowageError } from '../../src/base/errors.js';
import type { Driver } from '../../src/core/driver.js';
import { parseOptions } from '../../src/core/options.js';
import { DriverRegistry } from '../../src/core/registry.js';
import { failure } from '../helpers/failure.js';
import {
  createTestRuntime,
  TEST_HOST,
  type TestRuntime,
  type TestRuntimeOptions,
} from '../helpers/runtime.js';

/**
 * VolumeManager over the fake kernel and a real SQLite store: the Docker protocol's rules
 * (mount counting per ID, idempotent Create/Remove, Remove refused while in use), the block mount
 * pipeline (format only blank devices, roll back failures), reconcile() after a crash, and the
 * per-volume locks.
 */

// Docker mount IDs are 64 hex characters, one per mount point (not per container).
const ID_A = `a1${'0'.repeat(62)}`;
const ID_B = `b2${'0'.repeat(62)}`;
const ID_C = `c3${'0'.repeat(62)}`;

let t: TestRuntime;
let extra: TestRuntime[] = [];

beforeEach(async () => {
  t = await createTestRuntime();
});

afterEach(async () => {
  // Also after a timed-out test, so no temp directory is left behind.
  for (const rt of [...extra, t]) await rt.cleanup();
  extra = [];
});

/** A runtime with other options than `t`'s, cleaned up after the test. */
async function runtimeWith(opts: TestRuntimeOptions): Promise<TestRuntime> {
  const rt = await createTestRuntime(opts);
  extra.push(rt);
  return rt;
}

function target(name: string): string {
  return join(t.config.mountRoot, name);
}

function image(name: string): string {
  return join(t.config.local.imageDir, `${name}.img`);
}

/** This host's mount record of `name`, or undefined. */
async function mountRecord(name: string) {
  return (await t.store.getMounts(name)).find((m) => m.host === TEST_HOST);
}

/** Everything stowage holds for `name` on this host, in the store and in the fake kernel. */
async function footprint(name: string) {
  return {
    mounts: await t.store.getMounts(name),
    attachments: await t.store.getAttachments(name),
    intents: await t.store.listIntents(TEST_HOST),
    kernel: [...t.mounter.table.keys()],
    loops: t.loop.attached(),
  };
}

const NOTHING = { mounts: [], attachments: [], intents: [], kernel: [], loops: [] };

describe('mount counting per (name, ID)', () => {
  it('counts the same ID twice, so it needs two unmounts; the kernel mount is made once', async () => {
    await t.manager.create('local', 'v1', {});
    expect(await t.manager.mount('local', 'v1', ID_A)).toBe(target('v1'));
    // `docker cp` into a running container mounts again with the same ID.
    expect(await t.manager.mount('local', 'v1', ID_A)).toBe(target('v1'));
    expect(await t.manager.mount('local', 'v1', ID_B)).toBe(target('v1'));
    expect(t.mounter.count('mount')).toBe(1);
    expect((await mountRecord('v1'))?.refs).toEqual({ [ID_A]: 2, [ID_B]: 1 });

    await t.manager.unmount('local', 'v1', ID_A);
    expect((await mountRecord('v1'))?.refs).toEqual({ [ID_A]: 1, [ID_B]: 1 });
    await t.manager.unmount('local', 'v1', ID_B);
    expect((await mountRecord('v1'))?.refs).toEqual({ [ID_A]: 1 });
    expect(t.mounter.table.has(target('v1'))).toBe(true);
    expect(t.mounter.count('unmount')).toBe(0);

    await t.manager.unmount('local', 'v1', ID_A);
    expect(await footprint('v1')).toEqual(NOTHING);
  });

  it('treats an Unmount with an unknown ID as success and changes nothing', async () => {
    await t.manager.create('local', 'v1', {});
    await t.manager.mount('local', 'v1', ID_A);
    const before = await footprint('v1');

    await expect(t.manager.unmount('local', 'v1', ID_C)).resolves.toBeUndefined();
    expect(await footprint('v1')).toEqual(before);
    expect((await mountRecord('v1'))?.refs).toEqual({ [ID_A]: 1 });
    expect(t.mounter.count('unmount')).toBe(0);

    // Also for a volume that is not mounted, and for one that does not exist.
    await t.manager.create('local', 'v2', {});
    await expect(t.manager.unmount('local', 'v2', ID_A)).resolves.toBeUndefined();
    await expect(t.manager.unmount('local', 'no-such', ID_A)).resolves.toBeUndefined();
    expect(t.mounter.count('unmount')).toBe(0);
  });

  it('the last unmount unmounts, detaches the loop device and drops the records', async () => {
    const vol = await t.manager.create('local', 'v1', {});
    await t.manager.mount('local', 'v1', ID_A);
    expect(t.loop.attached()).toEqual([['/dev/loop0', image('v1')]]);
    expect(t.mounter.table.get(target('v1'))).toEqual({ source: '/dev/loop0', fsType: 'ext4', options: [] });
    expect(await t.store.getAttachments('v1')).toEqual([
      expect.objectContaining({ host: TEST_HOST, device: '/dev/loop0', state: 'attached' }),
    ]);
    expect(vol.fields.image).toBe(image('v1'));

    await t.manager.unmount('local', 'v1', ID_A);
    expect(await footprint('v1')).toEqual(NOTHING);
    expect(t.mounter.blockDevices()).toEqual([]);
    // The data stays: unmount is not remove.
    expect(existsSync(image('v1'))).toBe(true);
  });
});

describe('remove', () => {
  it('is refused with IN_USE while mounted, naming the mounts and the host, then allowed', async () => {
    await t.manager.create('local', 'v1', {});
    await t.manager.mount('local', 'v1', ID_A);
    await t.manager.mount('local', 'v1', ID_B);

    const err = await failure(t.manager.remove('local', 'v1'));
    expect(err.code).toBe('IN_USE');
    expect(err.message).toBe(
      `volume v1 is in use by 2 mounts on host ${TEST_HOST}; stop the containers or pods using it, then remove it again`,
    );
    expect((await t.manager.get('local', 'v1')).volume.status).toBe('ready');
    expect(existsSync(image('v1'))).toBe(true);
    expect(t.mounter.table.has(target('v1'))).toBe(true);

    await t.manager.unmount('local', 'v1', ID_A);
    await expect(t.manager.remove('local', 'v1')).rejects.toThrow(
      `volume v1 is in use by 1 mount on host ${TEST_HOST};`,
    );

    await t.manager.unmount('local', 'v1', ID_B);
    await t.manager.remove('local', 'v1');
    expect((await failure(t.manager.get('local', 'v1'))).code).toBe('NOT_FOUND');
    // The local driver's default remove policy is delete.
    expect(existsSync(image('v1'))).toBe(false);
    expect(await footprint('v1')).toEqual(NOTHING);
  });

  it('of a volume that does not exist is success', async () => {
    await expect(t.manager.remove('local', 'no-such')).resolves.toBeUndefined();
    await expect(t.manager.remove(undefined, 'no-such')).resolves.toBeUndefined();
    expect(await t.store.listVolumes()).toEqual([]);
  });

  it('refused by the driver (nothing deleted) leaves the volume usable', async () => {
    await t.manager.create('local', 'v1', {});
    const img = join(t.config.local.imageDir, 'v1.img');
    // Someone else attached the image (losetup by hand): destroy refuses and deletes nothing.
    const stray = await t.loop.attach(img);
    await expect(t.manager.remove('local', 'v1')).rejects.toThrow(
      `image ${img} is still attached as ${stray}; nothing was deleted`,
    );
    await t.loop.detach(stray);

    expect((await t.store.getVolume('v1'))?.status).toBe('ready');
    expect(await t.store.listIntents('test-host')).toEqual([]);
    await expect(t.manager.mount('local', 'v1', 'a'.repeat(64))).resolves.toBe(
      join(t.config.mountRoot, 'v1'),
    );
  });
});

describe('create', () => {
  it('is idempotent with the same options, compared in canonical form', async () => {
    const first = await t.manager.create('local', 'v1', { size: '64M' });
    expect(first).toMatchObject({ status: 'ready', options: { size: '64M', fsType: 'ext4' } });
    // 65536K is 64M: the recorded options are canonical, so this is the same request.
    const again = await t.manager.create('local', 'v1', { size: '65536K' });
    expect(again).toEqual(first);
    expect(await t.store.listVolumes()).toHaveLength(1);
    expect((await stat(image('v1'))).size).toBe(64 * 1024 ** 2);
  });

  it('is idempotent with no options at all', async () => {
    const first = await t.manager.create('local', 'v1', {});
    expect(first).toMatchObject({ options: { size: '1G', fsType: 'ext4' }, givenOptions: [] });
    expect(await t.manager.create('local', 'v1', {})).toEqual(first);
    expect(await t.store.listVolumes()).toHaveLength(1);
  });

  it('finishes an interrupted Create: what it finds is its own work, not data to adopt', async () => {
    // A crash after the driver wrote the image but before the record said 'ready'.
    await t.store.insertVolume({
      name: 'v1',
      driver: 'local',
      options: { size: '64M', fsType: 'ext4' },
      givenOptions: ['size'],
      removePolicy: 'retain',
      adopted: false,
      createdAt: new Date().toISOString(),
      status: 'creating',
      fields: { image: image('v1'), madeImage: true },
    });
    await mkdir(t.config.local.imageDir, { recursive: true });
    await writeFile(image('v1'), '');
    await truncate(image('v1'), 64 * 1024 ** 2);
    expect((await failure(t.manager.mount('local', 'v1', ID_A))).code).toBe('BUSY');

    const vol = await t.manager.create('local', 'v1', { size: '64M' });
    expect(vol).toMatchObject({ status: 'ready', adopted: false, removePolicy: 'delete' });
    expect(vol.fields).toEqual({ image: image('v1'), sizeBytes: 64 * 1024 ** 2 });
    await t.manager.mount('local', 'v1', ID_A);
  });

  /** The record a Create killed inside provisioning leaves behind, with what it had noted. */
  async function interrupted(name: string, fields: Record<string, unknown>): Promise<void> {
    await t.store.insertVolume({
      name,
      driver: 'local',
      options: { size: '64M', fsType: 'ext4' },
      givenOptions: ['size'],
      removePolicy: 'retain', // the placeholder: no policy is decided before provisioning ends
      adopted: false,
      createdAt: new Date().toISOString(),
      status: 'creating',
      fields,
    });
  }

  it('Remove of an interrupted Create deletes the image that Create made, so no later Create adopts it', async () => {
    await interrupted('v1', { image: image('v1'), madeImage: true });
    await mkdir(t.config.local.imageDir, { recursive: true });
    await writeFile(image('v1'), '');
    await truncate(image('v1'), 64 * 1024 ** 2);

    await t.manager.remove('local', 'v1');
    expect(await t.store.getVolume('v1')).toBeUndefined();
    await expect(stat(image('v1'))).rejects.toMatchObject({ code: 'ENOENT' });
    const again = await t.manager.create('local', 'v1', { size: '64M' });
    expect(again).toMatchObject({ status: 'ready', adopted: false, removePolicy: 'delete' });
  });

  it('Remove of an interrupted Create that was adopting an image keeps that image', async () => {
    await mkdir(t.config.local.imageDir, { recursive: true });
    await writeFile(image('v1'), 'data someone had');
    await interrupted('v1', {});
    await t.manager.remove('local', 'v1');
    expect(await t.store.getVolume('v1')).toBeUndefined();
    expect(await readFile(image('v1'), 'utf8')).toBe('data someone had');
  });

  it('a failed Create undoes what it noted before forgetting the record', async () => {
    const abandoned: string[] = [];
    const local = t.runtime.registry.get('local');
    const spy = vi.spyOn(local, 'provision').mockImplementation(async (v) => {
      await v.note({ image: image(v.name), madeImage: true });
      await mkdir(t.config.local.imageDir, { recursive: true });
      await writeFile(image(v.name), '');
      throw new StowageError('UNAVAILABLE', 'the disk filled up');
    });
    const undo = vi.spyOn(local, 'abandon').mockImplementation(async (v) => {
      abandoned.push(String(v.fields.image));
      await rm(image(v.name));
    });
    const err = await failure(t.manager.create('local', 'v1', { size: '64M' }));
    expect(err.message).toBe('the disk filled up');
    expect(abandoned).toEqual([image('v1')]);
    expect(await t.store.getVolume('v1')).toBeUndefined();

    // An undo that fails keeps the record, naming what is left, for Remove to finish.
    undo.mockRejectedValueOnce(new Error('EIO'));
    const err2 = await failure(t.manager.create('local', 'v2', { size: '64M' }));
    expect(err2.code).toBe('UNAVAILABLE');
    expect(err2.message).toBe(
      'the disk filled up; undoing what this Create made failed too (EIO): run Remove v2 to retry the cleanup',
    );
    expect(await t.store.getVolume('v2')).toMatchObject({
      status: 'creating',
      fields: { image: image('v2'), madeImage: true },
    });
    spy.mockRestore();
    undo.mockRestore();
    await t.manager.remove('local', 'v2');
    expect(await t.store.getVolume('v2')).toBeUndefined();
    await expect(stat(image('v2'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('is a CONFLICT with different options, and the recorded volume is kept as it was', async () => {
    const first = await t.manager.create('local', 'v1', { size: '64M' });
    const err = await failure(t.manager.create('local', 'v1', { size: '128M' }));
    expect(err.code).toBe('CONFLICT');
    expect(err.message).toBe(
      'volume v1 already exists with different options: size="128M" (recorded: "64M"); remove it first or use another name',
    );
    expect(await t.store.getVolume('v1')).toEqual(first);
    expect((await stat(image('v1'))).size).toBe(64 * 1024 ** 2);
  });

  it('is a CONFLICT when the name belongs to another driver, whose volume stays untouched', async () => {
    // A second driver next to the built-in local one, through the runtime's registry seam.
    const registry = new DriverRegistry();
    await registerBuiltins(registry);
    const other = makeOtherDriver();
    registry.register('other', () => other);
    const two = await runtimeWith({ registry, flags: { drivers: ['local', 'other'] } });
    const theirs = await two.manager.create('other', 'shared', {});
    // Idempotent Create answers from the record; the driver does not provision again.
    expect(await two.manager.create('other', 'shared', {})).toEqual(theirs);
    expect(other.provisioned).toEqual(['shared']);

    const err = await failure(two.manager.create('local', 'shared', {}));
    expect(err.code).toBe('CONFLICT');
    expect(err.message).toBe(
      'volume shared already exists with driver other; choose another name or remove it first',
    );

    // Each Docker socket is one driver: through `local`, the other driver's volume does not exist.
    expect((await failure(two.manager.get('local', 'shared'))).code).toBe('NOT_FOUND');
    expect((await failure(two.manager.mount('local', 'shared', ID_A))).code).toBe('NOT_FOUND');
    await two.manager.remove('local', 'shared');
    expect(await two.manager.list('local')).toEqual([]);
    expect(await two.store.getVolume('shared')).toEqual(theirs);
    // A global driver on a single-host store: Docker must not take the names as cluster-wide.
    expect(two.manager.capabilities('other')).toEqual({ scope: 'local' });
  });
});

describe('format if blank', () => {
  it('formats on the first mount only; a later mount finds the filesystem and keeps it', async () => {
    await t.manager.create('local', 'v1', { fsType: 'ext4' });
    await t.manager.mount('local', 'v1', ID_A);
    expect(t.mounter.callsOf('mkfs')).toEqual([
      { op: 'mkfs', path: '/dev/loop0', detail: { fsType: 'ext4' } },
    ]);

    await t.manager.unmount('local', 'v1', ID_A);
    await t.manager.mount('local', 'v1', ID_B);
    // Detached and attached again in between: still one mkfs in all.
    expect(t.loop.count('attach')).toBe(2);
    expect(t.mounter.count('mkfs')).toBe(1);
    expect(t.mounter.table.get(target('v1'))?.fsType).toBe('ext4');
  });

  it('never formats a device that already has a filesystem, even another type than requested', async () => {
    await t.manager.create('local', 'v1', { fsType: 'ext4' });
    // The image already holds an xfs filesystem (data from elsewhere): it must not be formatted over.
    t.loop.diskOf(image('v1')).fsType = 'xfs';

    await t.manager.mount('local', 'v1', ID_A);
    expect(t.mounter.count('mkfs')).toBe(0);
    expect(t.mounter.table.get(target('v1'))).toEqual({ source: '/dev/loop0', fsType: 'xfs', options: [] });
    expect(t.loop.diskOf(image('v1')).fsType).toBe('xfs');
  });
});

describe('mount failure', () => {
  it('rolls back: no mount record, loop device detached, the StowageError passed on; a later mount works', async () => {
    await t.manager.create('local', 'v1', {});
    const injected = new StowageError('TIMEOUT', 'timed out after 30 s waiting for mount of /dev/loop0');
    t.mounter.failNext('mount', injected);

    expect(await failure(t.manager.mount('local', 'v1', ID_A))).toBe(injected);
    expect(await footprint('v1')).toEqual(NOTHING);
    expect(t.mounter.blockDevices()).toEqual([]);
    // The failed mount leaves nothing that would block Remove.
    expect((await t.manager.get('local', 'v1')).mounts).toEqual([]);

    expect(await t.manager.mount('local', 'v1', ID_A)).toBe(target('v1'));
    expect((await mountRecord('v1'))?.refs).toEqual({ [ID_A]: 1 });
    expect(t.mounter.table.has(target('v1'))).toBe(true);
    // The first attempt had formatted the device before mount failed; the retry does not format again.
    expect(t.mounter.count('mkfs')).toBe(1);
  });

  it('wraps an error that is not a StowageError as INTERNAL, naming the volume', async () => {
    await t.manager.create('local', 'v1', {});
    t.mounter.failNext('mount', new Error('wrong fs type, bad option, bad superblock'));

    const err = await failure(t.manager.mount('local', 'v1', ID_A));
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toBe('mount of volume v1: wrong fs type, bad option, bad superblock');
    expect(await footprint('v1')).toEqual(NOTHING);
  });

  it('rolls back a failed mkfs too, and the next mount formats the still blank device', async () => {
    await t.manager.create('local', 'v1', {});
    t.mounter.failNext('mkfs', new StowageError('TIMEOUT', 'mkfs.ext4 of /dev/loop0 timed out'));

    expect((await failure(t.manager.mount('local', 'v1', ID_A))).code).toBe('TIMEOUT');
    expect(await footprint('v1')).toEqual(NOTHING);
    expect(t.loop.diskOf(image('v1')).fsType).toBeNull();

    await t.manager.mount('local', 'v1', ID_A);
    expect(t.mounter.count('mkfs')).toBe(2);
    expect(t.loop.diskOf(image('v1')).fsType).toBe('ext4');
  });

  it('of an attach rolls back the attachment record', async () => {
    await t.manager.create('local', 'v1', {});
    t.loop.failNext('attach', new StowageError('UNAVAILABLE', 'losetup: cannot find an unused loop device'));

    expect((await failure(t.manager.mount('local', 'v1', ID_A))).code).toBe('UNAVAILABLE');
    expect(await footprint('v1')).toEqual(NOTHING);
    expect(t.mounter.count('mount')).toBe(0);
  });
});

describe('reconcile()', () => {
  it('leaves a recorded mount that the kernel still has alone', async () => {
    await t.manager.create('local', 'v1', {});
    await t.manager.mount('local', 'v1', ID_A);
    const before = await footprint('v1');

    expect(await t.manager.reconcile()).toEqual({ actions: [] });
    expect(await footprint('v1')).toEqual(before);
  });

  it('drops a recorded mount the kernel no longer has and releases its attachment', async () => {
    await t.manager.create('local', 'v1', {});
    await t.manager.mount('local', 'v1', ID_A);
    await t.manager.mount('local', 'v1', ID_B);
    t.mounter.vanish(target('v1')); // someone ran umount by hand

    expect(await t.manager.reconcile()).toEqual({
      actions: ['v1 had 2 mount(s) recorded but is not mounted (host restarted?): records dropped'],
    });
    expect(await footprint('v1')).toEqual(NOTHING);
    // With the stale counts gone, the volume can be removed.
    await t.manager.remove('local', 'v1');
    expect(await t.store.getVolume('v1')).toBeUndefined();
  });

  it('finishes an interrupted unmount (a mount record with zero refs)', async () => {
    await t.manager.create('local', 'v1', {});
    await t.manager.mount('local', 'v1', ID_A);
    t.mounter.failNext('unmount', new StowageError('INTERNAL', `umount: ${target('v1')}: target is busy.`));

    await expect(t.manager.unmount('local', 'v1', ID_A)).rejects.toThrow('target is busy');
    // The reference was dropped anyway (as Docker's local driver does); the teardown is owed.
    expect(await mountRecord('v1')).toMatchObject({ refs: {}, state: 'unmounting' });
    expect(t.mounter.table.has(target('v1'))).toBe(true);
    // Get and List no longer offer the mountpoint: no container may start on it.
    expect((await t.manager.get('local', 'v1')).mountpoint).toBeUndefined();
    expect((await t.manager.list())[0]).not.toHaveProperty('mountpoint');

    expect(await t.manager.reconcile()).toEqual({ actions: ['unfinished unmount of v1: completed'] });
    expect(await footprint('v1')).toEqual(NOTHING);
  });

  it('undoes a mount whose intent is still in the journal but which has no mount record', async () => {
    const vol = await t.manager.create('local', 'v1', {});
    // What a process that crashed between the kernel mount and recording it leaves behind: the
    // intent, the attachment, the loop device and the kernel mount, but no mount record.
    const device = await t.loop.attach(image('v1'));
    t.loop.diskOf(image('v1')).fsType = 'ext4';
    await t.mounter.mount(device, target('v1'), { fsType: 'ext4' });
    await t.store.putAttachment({
      volume: vol.name,
      host: TEST_HOST,
      device,
      state: 'attached',
      updatedAt: new Date().toISOString(),
    });
    await t.store.beginIntent({
      volume: vol.name,
      host: TEST_HOST,
      op: 'mount',
      details: { id: ID_A, target: target('v1') },
    });

    expect(await t.manager.reconcile()).toEqual({ actions: ['interrupted mount of v1: undone'] });
    expect(await footprint('v1')).toEqual(NOTHING);

    // Docker retries the mount, which works from a clean state.
    await t.manager.mount('local', 'v1', ID_A);
    expect((await mountRecord('v1'))?.refs).toEqual({ [ID_A]: 1 });
  });
});

describe('locks', () => {
  it('answers BUSY to a second operation on a volume in flight, while other volumes proceed', async () => {
    const fast = await runtimeWith({ flags: { timeouts: { lockWaitMs: 50 } } });
    const m = fast.manager;
    await m.create('local', 'v1', {});
    await m.create('local', 'v2', {});
    const gate = fast.mounter.holdNext('mount', join(fast.config.mountRoot, 'v1'));
    const first = m.mount('local', 'v1', ID_A);
    await gate.reached; // v1's lock is held, its mount is in the kernel call

    for (const [op, call] of [
      ['mount', () => m.mount('local', 'v1', ID_B)],
      ['unmount', () => m.unmount('local', 'v1', ID_A)],
      ['remove', () => m.remove('local', 'v1')],
    ] as const) {
      const err = await failure(call());
      expect(err.code).toBe('BUSY');
      expect(err.retryable).toBe(true);
      expect(err.message).toBe(
        `volume v1 is busy with another operation (mount by process ${process.pid} on host ${TEST_HOST}); ` +
          `${op} was not started. Try again in a few seconds.`,
      );
    }
    // Reads take no lock.
    expect((await m.get('local', 'v1')).mountpoint).toBeUndefined();

    // Other volumes are not held up by v1.
    expect(await m.mount('local', 'v2', ID_A)).toBe(join(fast.config.mountRoot, 'v2'));
    await m.create('local', 'v3', {});
    await m.unmount('local', 'v2', ID_A);

    gate.release();
    expect(await first).toBe(join(fast.config.mountRoot, 'v1'));
    // The refused operations changed nothing; v1 works normally again.
    expect((await fast.store.getMounts('v1'))[0]?.refs).toEqual({ [ID_A]: 1 });
    await m.mount('local', 'v1', ID_B);
    expect((await fast.store.getMounts('v1'))[0]?.refs).toEqual({ [ID_A]: 1, [ID_B]: 1 });
  });
});

describe('reads', () => {
  it('get() of a volume mounted here gives its mountpoint; list() answers from the store', async () => {
    const v1 = await t.manager.create('local', 'v1', { size: '64M' });
    const v2 = await t.manager.create('local', 'v2', {});
    await t.manager.mount('local', 'v1', ID_A);

    const view = await t.manager.get('local', 'v1');
    expect(view.mountpoint).toBe(target('v1'));
    expect(view.status).toEqual({
      driver: 'local',
      state: 'ready',
      removePolicy: 'delete',
      adopted: false,
      size: '64M',
      fsType: 'ext4',
      image: image('v1'),
      mounts: [{ host: TEST_HOST, mountpoint: target('v1'), refs: 1, state: 'mounted' }],
      attachments: [{ host: TEST_HOST, device: '/dev/loop0', state: 'attached' }],
    });
    expect((await t.manager.get(undefined, 'v2')).mountpoint).toBeUndefined();
    expect(await t.manager.path('local', 'v1')).toBe(target('v1'));
    expect(await t.manager.path('local', 'v2')).toBe('');

    const kernelCalls = t.mounter.calls.length;
    expect(await t.manager.list('local')).toEqual([
      { name: 'v1', driver: 'local', createdAt: v1.createdAt, mountpoint: target('v1') },
      { name: 'v2', driver: 'local', createdAt: v2.createdAt },
    ]);
    expect(await t.manager.list()).toHaveLength(2);
    await t.manager.get('local', 'v1');
    // Get and List never ask the kernel (dockerd calls them constantly and treats errors as "gone").
    expect(t.mounter.calls.length).toBe(kernelCalls);
  });
});

/** A minimal second driver: no storage, no attach; enough to own a volume name. */
function makeOtherDriver(): Driver & { provisioned: string[] } {
  const provisioned: string[] = [];
  return {
    name: 'other',
    scope: 'global',
    needsAttach: false,
    lazyUnmount: false,
    optionSpecs: {},
    provisioned,
    parseOptions: (raw) => parseOptions('other', {}, raw),
    provision: async (v) => {
      provisioned.push(v.name);
      return { fields: {}, adopted: false, removePolicy: 'delete' };
    },
    destroy: async () => undefined,
    abandon: async () => undefined,
    mountSpec: () => {
      throw new StowageError('NOT_SUPPORTED', 'the other driver does not mount');
    },
    describe: () => ({}),
  };
}

describe('mount path: steps the records answer (issue 14)', () => {
  it('records the filesystem it made, and a later mount mounts it as that type without blkid', async () => {
    await t.manager.create('local', 'v1', { fsType: 'ext4' });
    await t.manager.mount('local', 'v1', ID_A);
    expect(t.mounter.count('probe')).toBe(1); // blank: probed, then formatted
    expect((await t.store.getVolume('v1'))?.fields.madeFilesystem).toBe('ext4');
    await t.manager.unmount('local', 'v1', ID_A);

    await t.manager.mount('local', 'v1', ID_B);
    expect(t.mounter.count('probe')).toBe(1);
    expect(t.mounter.callsOf('mount').at(-1)?.detail).toMatchObject({ source: '/dev/loop0', fsType: 'ext4' });
    expect(t.mounter.count('mkfs')).toBe(1);
  });

  it('still probes, every time, a volume whose filesystem stowage did not make', async () => {
    await t.manager.create('local', 'v1', { fsType: 'ext4' });
    t.loop.diskOf(image('v1')).fsType = 'ext4'; // an image that came with its filesystem
    for (const id of [ID_A, ID_B]) {
      await t.manager.mount('local', 'v1', id);
      await t.manager.unmount('local', 'v1', id);
    }
    expect(t.mounter.count('probe')).toBe(2);
    expect(t.mounter.count('mkfs')).toBe(0);
    expect((await t.store.getVolume('v1'))?.fields.madeFilesystem).toBeUndefined();
  });

  it('mounts what a reformatted volume holds now, probing it when the recorded type does not mount', async () => {
    await t.manager.create('local', 'v1', { fsType: 'ext4' });
    await t.manager.mount('local', 'v1', ID_A);
    await t.manager.unmount('local', 'v1', ID_A);
    t.loop.diskOf(image('v1')).fsType = 'xfs'; // someone ran mkfs.xfs on the image

    await t.manager.mount('local', 'v1', ID_B);
    expect(t.mounter.table.get(target('v1'))).toMatchObject({ fsType: 'xfs' });
    expect(t.mounter.count('probe')).toBe(2);
    expect(t.mounter.count('mkfs')).toBe(1);
  });

  it('refuses to format again a volume stowage formatted that now shows no filesystem', async () => {
    await t.manager.create('local', 'v1', { fsType: 'ext4' });
    await t.manager.mount('local', 'v1', ID_A);
    await t.manager.unmount('local', 'v1', ID_A);
    t.loop.diskOf(image('v1')).fsType = null; // wiped signatures: the data may still be there

    const err = await failure(t.manager.mount('local', 'v1', ID_B));
    expect(err.code).toBe('CONFLICT');
    expect(err.message).toMatch(/shows no filesystem, but stowage made a ext4 filesystem on this volume/);
    expect(err.message).toMatch(/remove the volume and create it again/);
    expect(t.mounter.count('mkfs')).toBe(1);
    expect(await footprint('v1')).toEqual(NOTHING);
  });

  it('does not mount a recorded loop device that now backs another image: it attaches afresh', async () => {
    await t.manager.create('local', 'v1', {});
    await t.manager.create('local', 'v2', {});
    // Attached here without a mount (a kubelet waitforattach), recorded as /dev/loop0.
    expect(await t.manager.attachHere('local', 'v1')).toBe('/dev/loop0');
    // A reboot frees it; v2 is mounted first and gets /dev/loop0.
    await t.loop.detach('/dev/loop0');
    await t.manager.mount('local', 'v2', ID_A);
    expect(t.loop.attached()).toEqual([['/dev/loop0', image('v2')]]);

    await t.manager.mount('local', 'v1', ID_B);
    expect(t.mounter.table.get(target('v1'))).toMatchObject({ source: '/dev/loop1' });
    expect(t.mounter.table.get(target('v2'))).toMatchObject({ source: '/dev/loop0' });
    expect(await t.store.getAttachments('v1')).toEqual([
      expect.objectContaining({ host: TEST_HOST, device: '/dev/loop1', state: 'attached' }),
    ]);
    // v2's device was left alone.
    expect(t.loop.attached()).toEqual([
      ['/dev/loop0', image('v2')],
      ['/dev/loop1', image('v1')],
    ]);
  });

  it('mounts a recorded loop device that still backs the image without attaching again', async () => {
    await t.manager.create('local', 'v1', {});
    await t.manager.attachHere('local', 'v1');
    await t.manager.mount('local', 'v1', ID_A);
    expect(t.loop.count('attach')).toBe(1);
    expect(t.mounter.table.get(target('v1'))).toMatchObject({ source: '/dev/loop0' });
  });

  it('asks the unmount of a local volume to free its loop device too (umount -d)', async () => {
    await t.manager.create('local', 'v1', {});
    await t.manager.mount('local', 'v1', ID_A);
    await t.manager.unmount('local', 'v1', ID_A);
    expect(t.mounter.callsOf('unmount')).toEqual([
      expect.objectContaining({
        path: target('v1'),
        detail: expect.objectContaining({ freeLoopDevice: true }),
      }),
    ]);
    expect(t.loop.attached()).toEqual([]);
  });
});
