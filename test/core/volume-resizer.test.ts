import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { registerBuiltins } from '../../drivers/index.js';
import { StowageError } from '../../src/base/errors.js';
import type { Driver } from '../../src/core/driver.js';
import { parseOptions } from '../../src/core/options.js';
import { DriverRegistry } from '../../src/core/registry.js';
import type { VolumeRecord } from '../../src/state/store.js';
import type { FakeDisk, MounterCall } from '../fakes/fake-mounter.js';
import { failure } from '../helpers/failure.js';
import { createTestRuntime, TEST_HOST, type TestRuntime } from '../helpers/runtime.js';

/**
 * Volume expansion in the core (src/core/volume-resizer.ts and the grow pipeline it drives,
 * src/core/grow-pipeline.ts): expand() grows the storage through the driver and records its
 * fields; growFilesystem() grows the filesystem on this host, online when it can, else unmounted
 * but only when nobody but kubelet's device mounts uses it, in an order that never checks or
 * resizes a filesystem that is still mounted anywhere (the fake kernel refuses that too).
 */
const GiB = 1024 ** 3;
const DEVICE_REF = 'device:v1';
const POD_REF = 'pod:0b7c1d54-5f3a-4e8b-9c61-3a2f1e0d9c8b:pv-db';
const DOCKER_REF = `a1${'0'.repeat(62)}`;
const ONLINE_REFUSED =
  'online resize2fs of /dev/loop0 failed (exit 1): resize2fs: Permission denied to resize filesystem';

/** Storage that grows in whole GiB and records its size in its fields, as EBS does. */
class GrowingDisk implements Partial<Driver> {
  readonly name = 'grow';
  readonly scope = 'global' as const;
  readonly needsAttach = false;
  readonly lazyUnmount = false;
  readonly optionSpecs = {};
  readonly requests: number[] = [];
  parseOptions(raw: Record<string, string>) {
    return parseOptions<Record<string, unknown>>('grow', this.optionSpecs, raw, {});
  }
  async provision() {
    return { fields: { sizeGiB: 1, id: 'disk-1' }, adopted: false, removePolicy: 'delete' as const };
  }
  async destroy() {}
  mountSpec(): never {
    throw new Error('not mounted in these tests');
  }
  describe() {
    return {};
  }
  async expand(vol: VolumeRecord, bytes: number) {
    this.requests.push(bytes);
    const size = Math.max(Number(vol.fields.sizeGiB), Math.ceil(bytes / GiB));
    return size === vol.fields.sizeGiB
      ? { sizeBytes: size * GiB }
      : { sizeBytes: size * GiB, fields: { ...vol.fields, sizeGiB: size } };
  }
}

let t: TestRuntime;
let grow: GrowingDisk;

beforeEach(async () => {
  grow = new GrowingDisk();
  const registry = new DriverRegistry();
  await registerBuiltins(registry);
  registry.register('grow', () => grow as unknown as Driver);
  t = await createTestRuntime({
    registry,
    flags: { drivers: ['local', 'grow'], timeouts: { deviceWaitMs: 100 } },
  });
});

afterEach(async () => {
  await t.cleanup();
});

const target = () => join(t.config.mountRoot, 'v1');
/** kubelet's device mount path and a second bind mount (read-only, of a subdirectory). */
const dmp = () =>
  join(t.dir, 'kubelet', 'plugins', 'kubernetes.io', 'flexvolume', 'stowage', 'local', 'mounts', 'v1');
const roBind = () => join(t.dir, 'elsewhere', 'v1-logs');

/** The local volume v1, mounted here for `refs`, its disk grown to 2 GiB as the cloud would do. */
async function mountedVolume(refs: string[], binds = true): Promise<FakeDisk> {
  await t.manager.create('local', 'v1', {});
  for (const id of refs) await t.manager.mount('local', 'v1', id);
  if (binds) {
    await t.mounter.mount(target(), dmp(), { options: ['bind'] });
    await t.mounter.mount(join(target(), 'logs'), roBind(), { options: ['bind', 'ro'] });
  }
  const disk = t.loop.diskOf(join(t.config.local.imageDir!, 'v1.img'));
  expect(disk.fsSizeBytes).toBe(GiB);
  disk.sizeBytes = 2 * GiB;
  t.mounter.calls.length = 0;
  return disk;
}

/** The calls that change something, as `op path`, in order. */
function changes(): string[] {
  const changing = new Set<MounterCall['op']>(['mount', 'unmount', 'fsck', 'resize', 'mkfs']);
  return t.mounter.calls
    .filter((c) => changing.has(c.op))
    .map((c) => {
      const detail = c.detail as { mountpoint?: string; options?: string[]; source?: string } | undefined;
      if (c.op === 'resize')
        return `resize ${c.path}${detail?.mountpoint ? ` online at ${detail.mountpoint}` : ''}`;
      if (c.op === 'mount')
        return `mount ${detail?.source} on ${c.path}${detail?.options?.length ? ` -o ${detail.options.join(',')}` : ''}`;
      return `${c.op} ${c.path}`;
    });
}

function table() {
  return [...t.mounter.table].map(([mountPoint, e]) => ({ mountPoint, ...e }));
}

describe('expand', () => {
  it("grows the storage through the driver and records the driver's new fields", async () => {
    await t.manager.create('grow', 'v1', {});
    expect(await t.manager.expand('grow', 'v1', 3 * GiB - 5)).toEqual({ sizeBytes: 3 * GiB });
    expect((await t.store.getVolume('v1'))?.fields).toEqual({ sizeGiB: 3, id: 'disk-1' });
    // Retried, or asked for less: the size stays, nothing is recorded again.
    expect(await t.manager.expand('grow', 'v1', 2 * GiB)).toEqual({ sizeBytes: 3 * GiB });
    expect(grow.requests).toEqual([3 * GiB - 5, 2 * GiB]);
  });

  it('answers NOT_SUPPORTED for a driver that cannot grow, NOT_FOUND for a volume that does not exist', async () => {
    await t.manager.create('local', 'v1', {});
    const err = await failure(t.manager.expand('local', 'v1', 2 * GiB));
    expect(err.code).toBe('NOT_SUPPORTED');
    expect(err.message).toBe('driver local cannot grow volumes (volume v1)');
    expect((await failure(t.manager.expand('grow', 'nope', GiB))).code).toBe('NOT_FOUND');
    expect((await failure(t.manager.expand('grow', 'v1', 0))).code).toBe('INVALID_ARGUMENT');
  });
});

describe('growFilesystem', () => {
  it('grows a mounted filesystem online when it can, and unmounts nothing', async () => {
    const disk = await mountedVolume([DEVICE_REF, POD_REF]);
    expect(await t.manager.growFilesystem('local', 'v1', { minDeviceBytes: 2 * GiB })).toEqual({
      device: '/dev/loop0',
      fsType: 'ext4',
      how: 'online',
    });
    expect(changes()).toEqual([`resize /dev/loop0 online at ${target()}`]);
    expect(disk.fsSizeBytes).toBe(2 * GiB);
  });

  it('when online resizing fails and only kubelet device mounts use it: unmounts all, checks, grows, mounts all back', async () => {
    const disk = await mountedVolume([DEVICE_REF]);
    const before = table();
    t.mounter.failNext('resize', new StowageError('INTERNAL', ONLINE_REFUSED));
    expect((await t.manager.growFilesystem('local', 'v1')).how).toBe('offline');
    expect(changes()).toEqual([
      `resize /dev/loop0 online at ${target()}`,
      `unmount ${roBind()}`,
      `unmount ${dmp()}`,
      `unmount ${target()}`,
      'fsck /dev/loop0',
      'resize /dev/loop0',
      `mount /dev/loop0 on ${target()}`,
      `mount ${target()} on ${dmp()} -o bind`,
      `mount ${join(target(), 'logs')} on ${roBind()} -o bind,ro`,
    ]);
    expect(disk.fsSizeBytes).toBe(2 * GiB);
    expect(table()).toEqual(before);
    expect((await t.store.getMounts('v1'))[0]?.refs).toEqual({ [DEVICE_REF]: 1 });
    expect(await t.store.listIntents(TEST_HOST)).toEqual([]);
  });

  it('refuses with IN_USE while a pod uses the volume, naming it, and unmounts nothing', async () => {
    const disk = await mountedVolume([DEVICE_REF, POD_REF]);
    const before = table();
    t.mounter.failNext('resize', new StowageError('INTERNAL', ONLINE_REFUSED));
    const err = await failure(t.manager.growFilesystem('local', 'v1'));
    expect(err.code).toBe('IN_USE');
    expect(err.message).toBe(
      `the filesystem of volume v1 cannot grow now: it is used on host ${TEST_HOST} by pod 0b7c1d54-5f3a-4e8b-9c61-3a2f1e0d9c8b; ` +
        `growing it while mounted failed (${ONLINE_REFUSED}), and it is grown unmounted only when no pod or container uses it: ` +
        'it grows on a retry after they have stopped',
    );
    expect(changes()).toEqual([`resize /dev/loop0 online at ${target()}`]);
    expect(table()).toEqual(before);
    expect(disk.fsSizeBytes).toBe(GiB);
  });

  it('refuses with IN_USE while a Docker container uses the volume', async () => {
    await mountedVolume([DEVICE_REF, DOCKER_REF], false);
    t.mounter.failNext('resize', new StowageError('INTERNAL', ONLINE_REFUSED));
    const err = await failure(t.manager.growFilesystem('local', 'v1'));
    expect(err.code).toBe('IN_USE');
    expect(err.message).toMatch(
      /^the filesystem of volume v1 cannot grow now: it is used on host test-host by 1 Docker mount;/,
    );
    expect(changes()).toEqual([`resize /dev/loop0 online at ${target()}`]);
  });

  it('puts everything back and answers IN_USE when a mount cannot be unmounted; nothing is checked', async () => {
    const disk = await mountedVolume([DEVICE_REF]);
    const before = table();
    t.mounter.failNext('resize', new StowageError('INTERNAL', ONLINE_REFUSED));
    t.mounter.failNext('unmount', new Error('umount: target is busy.'));
    const err = await failure(t.manager.growFilesystem('local', 'v1'));
    expect(err.code).toBe('IN_USE');
    expect(err.message).toBe(
      `${roBind()} could not be unmounted (umount: target is busy.): something on this host uses the volume besides pods and containers; its filesystem grows when that has stopped`,
    );
    expect(t.mounter.callsOf('fsck')).toEqual([]);
    expect(table()).toEqual(before);
    expect(disk.fsSizeBytes).toBe(GiB);
    expect(await t.store.listIntents(TEST_HOST)).toEqual([]);
  });

  it('grows the filesystem of a volume attached but not mounted here on the bare device', async () => {
    await t.manager.create('local', 'v1', {});
    const disk = t.loop.diskOf(join(t.config.local.imageDir!, 'v1.img'));
    Object.assign(disk, { fsType: 'ext4', sizeBytes: 2 * GiB, fsSizeBytes: GiB });
    await t.manager.attachHere('local', 'v1');
    t.mounter.calls.length = 0;
    expect((await t.manager.growFilesystem('local', 'v1')).how).toBe('offline');
    expect(changes()).toEqual(['fsck /dev/loop0', 'resize /dev/loop0']);
    expect(disk.fsSizeBytes).toBe(2 * GiB);
  });

  it('refuses with IN_USE to check or grow a bare device that something else here has mounted (or bind-mounted)', async () => {
    await t.manager.create('local', 'v1', {});
    const disk = t.loop.diskOf(join(t.config.local.imageDir!, 'v1.img'));
    Object.assign(disk, { fsType: 'ext4', sizeBytes: 2 * GiB, fsSizeBytes: GiB });
    await t.manager.attachHere('local', 'v1');
    const outside = join(t.dir, 'outside');
    await t.mounter.mount('/dev/loop0', outside, { fsType: 'ext4' });
    await t.mounter.mount(join(outside, 'sub'), roBind(), { options: ['bind'] });
    t.mounter.calls.length = 0;
    const err = await failure(t.manager.growFilesystem('local', 'v1'));
    expect(err.code).toBe('IN_USE');
    expect(err.message).toBe(
      `/dev/loop0 is still mounted at ${outside}, ${roBind()}; its filesystem is checked and grown only when it is mounted nowhere`,
    );
    expect(t.mounter.callsOf('mountsOfDevice').map((c) => c.path)).toEqual(['/dev/loop0']);
    expect(changes()).toEqual([]);
    expect(disk.fsSizeBytes).toBe(GiB);
  });

  it('leaves a blank device alone: mkfs makes the filesystem as big as the device', async () => {
    await t.manager.create('local', 'v1', {});
    await t.manager.attachHere('local', 'v1');
    t.mounter.calls.length = 0;
    expect((await t.manager.growFilesystem('local', 'v1')).how).toBe('none');
    expect(changes()).toEqual([]);
  });

  it('waits for the device to show the new size, and times out clearly when it does not', async () => {
    await mountedVolume([DEVICE_REF]);
    const err = await failure(t.manager.growFilesystem('local', 'v1', { minDeviceBytes: 3 * GiB }));
    expect(err.code).toBe('TIMEOUT');
    expect(err.message).toBe(
      `timed out after 100 ms waiting for block device /dev/loop0 to show at least ${3 * GiB} bytes. The storage was not grown yet (expandvolume first), or this host has not noticed.`,
    );
    expect(changes()).toEqual([]);
  });

  it('refuses a volume not attached here, and volumes without a block device', async () => {
    await t.manager.create('local', 'v1', {});
    const err = await failure(t.manager.growFilesystem('local', 'v1'));
    expect(err.code).toBe('NOT_FOUND');
    expect(err.message).toBe(
      `volume v1 is not attached to host ${TEST_HOST}; its filesystem grows on the host it is attached to`,
    );
    await t.manager.create('grow', 'g1', {});
    expect((await failure(t.manager.growFilesystem('grow', 'g1'))).code).toBe('NOT_SUPPORTED');
  });

  it('finishes a resize whose process died after unmounting: the next call grows and mounts everything back', async () => {
    const disk = await mountedVolume([DEVICE_REF]);
    const before = table();
    await interruptedResize();
    expect(t.mounter.table.size).toBe(0);
    expect((await t.manager.growFilesystem('local', 'v1')).how).toBe('online');
    expect(table()).toEqual(before);
    expect(disk.fsSizeBytes).toBe(2 * GiB);
    expect(await t.store.listIntents(TEST_HOST)).toEqual([]);
  });

  it("is finished by the daemon's reconcile too, before it looks at the mounts", async () => {
    const disk = await mountedVolume([DEVICE_REF]);
    const before = table();
    await interruptedResize();
    expect((await t.manager.reconcile()).actions).toEqual([
      'interrupted resize of v1: filesystem grown; mounts put back',
    ]);
    expect(table()).toEqual(before);
    expect(disk.fsSizeBytes).toBe(2 * GiB);
    expect((await t.store.getMounts('v1'))[0]?.refs).toEqual({ [DEVICE_REF]: 1 });
    expect(await t.store.listIntents(TEST_HOST)).toEqual([]);
  });
});

/** What a process killed between the unmounts and the mounting back leaves: an open intent, nothing mounted. */
async function interruptedResize(): Promise<void> {
  await t.store.beginIntent({
    volume: 'v1',
    host: TEST_HOST,
    op: 'resize',
    details: {
      target: target(),
      fsType: 'ext4',
      binds: [
        { mountPoint: dmp(), sub: '', flags: [] },
        { mountPoint: roBind(), sub: 'logs', flags: ['ro'] },
      ],
    },
  });
  for (const p of [roBind(), dmp(), target()]) t.mounter.vanish(p);
}
