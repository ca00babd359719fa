import { describe, expect, it } from 'vitest';
import { isStowageError } from '../../src/base/errors.js';
import type { RequestTally, StateStore, VolumeRecord } from '../../src/state/store.js';

export function volume(name: string, over: Partial<VolumeRecord> = {}): VolumeRecord {
  return {
    name,
    driver: 'local',
    options: { size: '1G', fsType: 'ext4' },
    givenOptions: ['size'],
    removePolicy: 'delete',
    adopted: false,
    createdAt: '2026-01-02T03:04:05.000Z',
    status: 'ready',
    fields: { image: `/var/lib/stowage/local/${name}.img` },
    ...over,
  };
}

const now = () => new Date().toISOString();

/**
 * The StateStore contract: every backend (SQLite today, etcd later) must pass all of it.
 * `open` returns a fresh, empty store; `openSibling` another client of the same data (a second
 * connection, as another process on the host would have).
 */
export function storeContract(
  backend: string,
  open: () => Promise<StateStore>,
  openSibling: (store: StateStore) => Promise<StateStore>,
): void {
  describe(`StateStore contract: ${backend}`, () => {
    it('stores, reads, updates and deletes volumes', async () => {
      const s = await open();
      await s.insertVolume(volume('a'));
      await s.insertVolume(volume('b', { driver: 'nfs', adopted: true, removePolicy: 'retain' }));
      expect(await s.getVolume('a')).toEqual(volume('a'));
      expect(await s.getVolume('missing')).toBeUndefined();
      expect((await s.listVolumes()).map((v) => v.name)).toEqual(['a', 'b']);
      expect((await s.listVolumes({ driver: 'nfs' })).map((v) => v.name)).toEqual(['b']);
      await s.updateVolume('a', {
        status: 'removing',
        fields: { x: 1 },
        adopted: true,
        removePolicy: 'archive',
      });
      expect(await s.getVolume('a')).toMatchObject({
        status: 'removing',
        fields: { x: 1 },
        adopted: true,
        removePolicy: 'archive',
      });
      await s.deleteVolume('a');
      await s.deleteVolume('a'); // deleting what is gone succeeds
      expect(await s.getVolume('a')).toBeUndefined();
      await s.close();
    });

    it('refuses a second volume of the same name with CONFLICT and keeps the first', async () => {
      const s = await open();
      await s.insertVolume(volume('dup'));
      const err = await s.insertVolume(volume('dup', { driver: 'nfs' })).catch((e: unknown) => e);
      expect(isStowageError(err, 'CONFLICT')).toBe(true);
      expect((await s.getVolume('dup'))?.driver).toBe('local');
      await s.close();
    });

    it('updating a missing volume is NOT_FOUND', async () => {
      const s = await open();
      const err = await s.updateVolume('ghost', { status: 'ready' }).catch((e: unknown) => e);
      expect(isStowageError(err, 'NOT_FOUND')).toBe(true);
      await s.close();
    });

    it('keeps attachments and mounts per (volume, host), with refs as a multiset', async () => {
      const s = await open();
      await s.insertVolume(volume('v'));
      await s.putAttachment({
        volume: 'v',
        host: 'h1',
        device: '/dev/loop1',
        state: 'attached',
        updatedAt: now(),
      });
      await s.putAttachment({
        volume: 'v',
        host: 'h1',
        device: '/dev/loop2',
        state: 'attached',
        updatedAt: now(),
      });
      await s.putAttachment({
        volume: 'v',
        host: 'h2',
        device: '/dev/xvdf',
        state: 'attaching',
        updatedAt: now(),
      });
      expect((await s.getAttachments('v')).map((a) => [a.host, a.device])).toEqual([
        ['h1', '/dev/loop2'],
        ['h2', '/dev/xvdf'],
      ]);
      expect((await s.listAttachmentsByHost('h2')).map((a) => a.volume)).toEqual(['v']);
      await s.putMount({
        volume: 'v',
        host: 'h1',
        mountpoint: '/m/v',
        refs: { a: 2, b: 1 },
        state: 'mounted',
        updatedAt: now(),
      });
      expect((await s.getMounts('v'))[0]?.refs).toEqual({ a: 2, b: 1 });
      expect((await s.listMountsByHost('h1')).map((m) => m.volume)).toEqual(['v']);
      expect(await s.listMountsByHost('h2')).toEqual([]);
      await s.deleteMount('v', 'h1');
      await s.deleteAttachment('v', 'h1');
      await s.deleteAttachment('v', 'h1');
      expect(await s.getMounts('v')).toEqual([]);
      expect((await s.getAttachments('v')).map((a) => a.host)).toEqual(['h2']);
      await s.close();
    });

    it('reads a volume with its mounts and attachments in one call', async () => {
      const s = await open();
      expect(await s.getVolumeState('none')).toEqual({ mounts: [], attachments: [] });
      await s.insertVolume(volume('vs'));
      await s.putMount({
        volume: 'vs',
        host: 'h1',
        mountpoint: '/m/vs',
        refs: { a: 1 },
        state: 'mounted',
        updatedAt: now(),
      });
      await s.putAttachment({
        volume: 'vs',
        host: 'h1',
        device: '/dev/loop3',
        state: 'attached',
        updatedAt: now(),
      });
      const state = await s.getVolumeState('vs');
      expect(state.volume).toEqual(volume('vs'));
      expect(state.mounts.map((m) => [m.host, m.refs])).toEqual([['h1', { a: 1 }]]);
      expect(state.attachments.map((a) => a.device)).toEqual(['/dev/loop3']);
      await s.deleteMount('vs', 'h1');
      expect((await s.getVolumeState('vs')).mounts).toEqual([]);
      await s.close();
    });

    it('lists summaries with the mountpoint of the asking host only', async () => {
      const s = await open();
      await s.insertVolume(volume('m1'));
      await s.insertVolume(volume('m2', { driver: 'nfs' }));
      await s.putMount({
        volume: 'm1',
        host: 'here',
        mountpoint: '/m/m1',
        refs: { a: 1 },
        state: 'mounted',
        updatedAt: now(),
      });
      await s.putMount({
        volume: 'm2',
        host: 'there',
        mountpoint: '/m/m2',
        refs: { a: 1 },
        state: 'mounted',
        updatedAt: now(),
      });
      expect(await s.listVolumeSummaries('here')).toEqual([
        { name: 'm1', driver: 'local', createdAt: '2026-01-02T03:04:05.000Z', mountpoint: '/m/m1' },
        { name: 'm2', driver: 'nfs', createdAt: '2026-01-02T03:04:05.000Z' },
      ]);
      expect((await s.listVolumeSummaries('there', { driver: 'nfs' })).map((v) => v.mountpoint)).toEqual([
        '/m/m2',
      ]);
      await s.close();
    });

    it('records hosts and an intent journal', async () => {
      const s = await open();
      await s.upsertHost({ id: 'h1', identity: { az: 'a' }, lastSeen: '2026-01-01T00:00:00.000Z' });
      await s.upsertHost({ id: 'h1', identity: { az: 'b' }, lastSeen: '2026-01-02T00:00:00.000Z' });
      expect(await s.listHosts()).toEqual([
        { id: 'h1', identity: { az: 'b' }, lastSeen: '2026-01-02T00:00:00.000Z' },
      ]);
      const i1 = await s.beginIntent({ volume: 'v', host: 'h1', op: 'mount', details: { id: 'x' } });
      const i2 = await s.beginIntent({ volume: 'w', host: 'h1', op: 'detach', details: {} });
      await s.beginIntent({ volume: 'v', host: 'h2', op: 'attach', details: {} });
      expect((await s.listIntents('h1')).map((i) => [i.id, i.op, i.details])).toEqual([
        [i1, 'mount', { id: 'x' }],
        [i2, 'detach', {}],
      ]);
      await s.endIntent(i1);
      expect((await s.listIntents('h1')).map((i) => i.volume)).toEqual(['w']);
      await s.close();
    });

    it('gives a lock to one owner at a time until it is released or expires', async () => {
      const s = await open();
      expect((await s.tryLock('volume/v', 'o1', 60_000)).acquired).toBe(true);
      const second = await s.tryLock('volume/v', 'o2', 60_000);
      expect(second.acquired).toBe(false);
      expect(second.holder?.owner).toBe('o1');
      expect((await s.tryLock('volume/w', 'o2', 60_000)).acquired).toBe(true);
      await s.unlock('volume/v', 'o2'); // not the holder: no effect
      expect((await s.tryLock('volume/v', 'o2', 60_000)).acquired).toBe(false);
      await s.unlock('volume/v', 'o1');
      expect((await s.tryLock('volume/v', 'o2', 1)).acquired).toBe(true);
      await new Promise((r) => setTimeout(r, 5));
      expect((await s.tryLock('volume/v', 'o3', 60_000)).acquired).toBe(true); // o2's lock expired
      await s.breakLock('volume/v', 'o3');
      expect((await s.tryLock('volume/v', 'o4', 60_000)).acquired).toBe(true);
      await s.close();
    });

    it('counts requests per host, door, driver, operation, code and bucket, adding up their seconds', async () => {
      const s = await open();
      const mount = { door: 'flexvolume', driver: 'local', operation: 'mount', code: 'OK' };
      await s.recordRequest('h1', { ...mount, le: '0.25', seconds: 0.125 });
      await s.recordRequest('h1', { ...mount, le: '0.25', seconds: 0.25 });
      await s.recordRequest('h1', { ...mount, le: '+Inf', seconds: 200 });
      await s.recordRequest('h1', { ...mount, code: 'BUSY', le: '0.25', seconds: 0.125 });
      await s.recordRequest('h1', { ...mount, door: 'cli', driver: '', le: '0.25', seconds: 0.125 });
      await s.recordRequest('h2', { ...mount, le: '0.25', seconds: 0.5 });
      const byLabels = (a: RequestTally, b: RequestTally) =>
        JSON.stringify([a.door, a.driver, a.operation, a.code, a.le]) <
        JSON.stringify([b.door, b.driver, b.operation, b.code, b.le])
          ? -1
          : 1;
      expect((await s.requestTallies('h1')).sort(byLabels)).toEqual([
        { ...mount, door: 'cli', driver: '', le: '0.25', count: 1, seconds: 0.125 },
        { ...mount, code: 'BUSY', le: '0.25', count: 1, seconds: 0.125 },
        { ...mount, le: '+Inf', count: 1, seconds: 200 },
        { ...mount, le: '0.25', count: 2, seconds: 0.375 },
      ]);
      expect(await s.requestTallies('h2')).toEqual([{ ...mount, le: '0.25', count: 1, seconds: 0.5 }]);
      expect(await s.requestTallies('h3')).toEqual([]);
      await s.close();
    });

    it('loses no count when several clients record the same request at once', async () => {
      const s = await open();
      const other = await openSibling(s);
      const sample = { door: 'flexvolume', driver: 'local', operation: 'unmount', code: 'OK', le: '0.1' };
      await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          (i % 2 === 0 ? s : other).recordRequest('h', { ...sample, seconds: 0.0625 }),
        ),
      );
      expect(await s.requestTallies('h')).toEqual([{ ...sample, count: 20, seconds: 1.25 }]);
      await other.close();
      await s.close();
    });
  });
}
