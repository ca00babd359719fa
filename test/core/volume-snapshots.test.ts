import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { registerBuiltins } from '../../drivers/index.js';
import { StowageError } from '../../src/base/errors.js';
import { DriverRegistry } from '../../src/core/registry.js';
import { INVALID_PAGE_TOKEN } from '../../src/core/volume-snapshots.js';
import { type MemorySnapshots, snapshotDisk } from '../fakes/snapshot-disk.js';
import { failure } from '../helpers/failure.js';
import { createTestRuntime, type TestRuntime } from '../helpers/runtime.js';

/**
 * Snapshots in the core (src/core/volume-snapshots.ts, VolumeManager.snapshots): taken by name
 * idempotently without a store table, only stowage's listed, shown or deleted, listed in a stable
 * order with page tokens of the core's own.
 */

let t: TestRuntime;
let mem: MemorySnapshots;

beforeEach(async () => {
  const disk = snapshotDisk();
  mem = disk.snapshots;
  const registry = new DriverRegistry();
  await registerBuiltins(registry);
  registry.register('snapdisk', () => disk.driver);
  t = await createTestRuntime({ registry, flags: { drivers: ['local', 'snapdisk'] } });
  await t.manager.create('snapdisk', 'db', {});
  await t.manager.create('snapdisk', 'web', {});
});

afterEach(async () => {
  await t.cleanup();
});

const snaps = () => t.manager.snapshots;

describe('create', () => {
  it('takes a snapshot under its name; the same name for the same volume answers it again', async () => {
    const first = await snaps().create('snapdisk', 'db', 'nightly');
    expect(first).toMatchObject({
      name: 'nightly',
      volume: 'db',
      state: 'pending',
      sizeBytes: 2 * 1024 ** 3,
    });
    const again = await snaps().create('snapdisk', 'db', 'nightly');
    expect(again.id).toBe(first.id);
    mem.finish(first.id);
    expect(await snaps().create('snapdisk', 'db', 'nightly')).toMatchObject({
      id: first.id,
      state: 'complete',
    });
    expect(mem.all.size).toBe(1);
    expect(mem.calls.filter((c) => c === 'create')).toHaveLength(1);
  });

  it('holds the lock until the storage lists the new snapshot: a repeat right after takes no second one', async () => {
    mem.listLag = 3; // listed only from the fourth look-up on, as EC2 lists a snapshot late
    const first = await snaps().create('snapdisk', 'db', 'nightly');
    const again = await snaps().create('snapdisk', 'db', 'nightly');
    expect(again.id).toBe(first.id);
    expect(mem.all.size).toBe(1);
  });

  it('the same name for another volume is CONFLICT, and nothing is taken', async () => {
    const first = await snaps().create('snapdisk', 'db', 'nightly');
    const err = await failure(snaps().create('snapdisk', 'web', 'nightly'));
    expect(err.code).toBe('CONFLICT');
    expect(err.message).toContain(`taken by ${first.id}, a snapshot of volume db`);
    expect(mem.all.size).toBe(1);
  });

  it('the same name for a volume made again under the same name is CONFLICT: the snapshot holds the old data', async () => {
    const old = await snaps().create('snapdisk', 'db', 'nightly');
    await t.manager.remove('snapdisk', 'db');
    await t.manager.create('snapdisk', 'db', {});
    const err = await failure(snaps().create('snapdisk', 'db', 'nightly'));
    expect(err.code).toBe('CONFLICT');
    expect(err.message).toContain(`taken by ${old.id}, a snapshot of an earlier volume db`);
    expect(mem.all.size).toBe(1);
  });

  it('refuses an unknown volume (NOT_FOUND), one of another driver, a bad name, a driver without snapshots', async () => {
    expect((await failure(snaps().create('snapdisk', 'nope', 'n'))).code).toBe('NOT_FOUND');
    await t.manager.create('local', 'loc', {});
    expect((await failure(snaps().create('snapdisk', 'loc', 'n'))).code).toBe('NOT_FOUND');
    const local = await failure(snaps().create('local', 'loc', 'n'));
    expect([local.code, local.message]).toEqual([
      'NOT_SUPPORTED',
      'driver local cannot take snapshots (ebs can)',
    ]);
    for (const bad of ['', 'x'.repeat(129), 'a\u0007b']) {
      expect((await failure(snaps().create('snapdisk', 'db', bad))).code).toBe('INVALID_ARGUMENT');
    }
    expect(mem.all.size).toBe(0);
  });

  it('a snapshot of the name that failed in the storage is reported, not answered as taken', async () => {
    const first = await snaps().create('snapdisk', 'db', 'nightly');
    mem.finish(first.id, 'failed');
    const err = await failure(snaps().create('snapdisk', 'db', 'nightly'));
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toContain('delete it and take the snapshot again');
  });

  it("a failing storage's error passes unchanged and takes nothing", async () => {
    mem.failNext('create', new StowageError('UNAVAILABLE', 'throttled'));
    expect((await failure(snaps().create('snapdisk', 'db', 'n'))).code).toBe('UNAVAILABLE');
    expect(mem.all.size).toBe(0);
  });
});

describe('delete and get', () => {
  it('deletes; again is success; get of it is NOT_FOUND', async () => {
    const s = await snaps().create('snapdisk', 'db', 'n');
    expect(await snaps().get('snapdisk', s.id)).toMatchObject({ id: s.id, volume: 'db' });
    await snaps().delete('snapdisk', s.id);
    await snaps().delete('snapdisk', s.id);
    expect(mem.all.size).toBe(0);
    expect((await failure(snaps().get('snapdisk', s.id))).code).toBe('NOT_FOUND');
  });

  it('never deletes or shows a snapshot stowage did not take', async () => {
    const foreign = mem.addForeign();
    const err = await failure(snaps().delete('snapdisk', foreign));
    expect(err.code).toBe('IN_USE');
    expect(err.message).toContain('stowage never deletes it');
    expect(mem.all.has(foreign)).toBe(true);
    expect((await failure(snaps().get('snapdisk', foreign))).code).toBe('NOT_FOUND');
    expect((await snaps().list('snapdisk', { id: foreign })).snapshots).toEqual([]);
  });
});

describe('list', () => {
  async function take(n: number, volume = 'db'): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) ids.push((await snaps().create('snapdisk', volume, `${volume}-${i}`)).id);
    return ids;
  }

  it('lists oldest first, by volume or by id, and only stowage snapshots', async () => {
    const db = await take(2);
    const web = await take(1, 'web');
    mem.addForeign();
    expect((await snaps().list('snapdisk', {})).snapshots.map((s) => s.id)).toEqual([...db, ...web]);
    expect((await snaps().list('snapdisk', { volume: 'web' })).snapshots.map((s) => s.id)).toEqual(web);
    expect((await snaps().list('snapdisk', { id: db[1] ?? '' })).snapshots.map((s) => s.id)).toEqual([db[1]]);
    expect((await snaps().list('snapdisk', { id: db[1] ?? '', volume: 'web' })).snapshots).toEqual([]);
    expect((await snaps().list('snapdisk', { id: 'snap-00000000000000fff' })).snapshots).toEqual([]);
  });

  it('pages with max and the token it gave, without repeats or gaps when entries go between pages', async () => {
    const ids = await take(5);
    const p1 = await snaps().list('snapdisk', {}, { max: 2 });
    expect(p1.snapshots.map((s) => s.id)).toEqual(ids.slice(0, 2));
    expect(p1.nextToken).toEqual(expect.any(String));
    // The last one served and one not yet served go before the next page is asked for.
    await snaps().delete('snapdisk', ids[1] ?? '');
    await snaps().delete('snapdisk', ids[3] ?? '');
    const p2 = await snaps().list('snapdisk', {}, { max: 2, startingToken: p1.nextToken ?? '' });
    expect(p2.snapshots.map((s) => s.id)).toEqual([ids[2], ids[4]]);
    expect(p2.nextToken).toBeUndefined();
    const all = await snaps().list('snapdisk', {}, { max: 0 });
    expect(all.snapshots).toHaveLength(3);
    expect(all.nextToken).toBeUndefined();
  });

  it('a token it did not give is INVALID_ARGUMENT marked as such; a negative page size is refused', async () => {
    for (const token of ['garbage!', Buffer.from('12/').toString('base64url'), 'eA']) {
      const err = await failure(snaps().list('snapdisk', {}, { startingToken: token }));
      expect(err.code).toBe('INVALID_ARGUMENT');
      expect(err.details.reason).toBe(INVALID_PAGE_TOKEN);
    }
    expect((await failure(snaps().list('snapdisk', {}, { max: -1 }))).code).toBe('INVALID_ARGUMENT');
  });
});
