import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { processAlive, VolumeLocks, type VolumeLocksOptions } from '../../src/core/locks.js';
import type { SqliteStore } from '../../src/state/sqlite-store.js';
import { within } from '../helpers/deadline.js';
import { failure } from '../helpers/failure.js';
import { ObservedStore } from '../helpers/observed-store.js';

/**
 * VolumeLocks over a real SQLite store: one operation per volume, in this process and across
 * processes (two VolumeLocks on one database file), with bounded waits and dead holders broken.
 */

const HOST = 'thishost';

/** A promise with its resolve function, to hold a locked operation open until the test says so. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** The pid of a process that has run and exited (and been reaped). */
async function deadPid(): Promise<number> {
  const child = execa('true');
  const pid = child.pid;
  await child;
  expect(pid).toBeTypeOf('number');
  expect(processAlive(pid!)).toBe(false);
  return pid!;
}

let dir: string;
let dbPath: string;
const stores: SqliteStore[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'stowage-locks-'));
  dbPath = join(dir, 'state.db');
});

afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  await rm(dir, { recursive: true, force: true });
});

function openStore(): ObservedStore {
  const s = new ObservedStore(dbPath);
  stores.push(s);
  return s;
}

function locksOn(store: SqliteStore, opts: Partial<VolumeLocksOptions> = {}): VolumeLocks {
  return new VolumeLocks(store, { host: HOST, waitMs: 5_000, ttlMs: 60_000, ...opts });
}

/** The owner string the store holds for volume `name` now, or undefined when it is free. */
async function storeHolder(store: SqliteStore, name: string): Promise<string | undefined> {
  const probe = `probe|0|probe|${Math.random()}`;
  const res = await store.tryLock(`volume/${name}`, probe, 60_000);
  if (res.acquired) {
    await store.unlock(`volume/${name}`, probe);
    return undefined;
  }
  return res.holder?.owner;
}

describe('VolumeLocks in one process', () => {
  it('runs fn under the lock, returns its value and frees the volume afterwards', async () => {
    const store = openStore();
    const locks = locksOn(store);
    let heldInside: string | undefined;
    const value = await locks.withLock('v1', 'mount', async () => {
      heldInside = await storeHolder(store, 'v1');
      return 42;
    });
    expect(value).toBe(42);
    // The store lock names host, pid and op, so another process can tell who holds it.
    // Then a sequence number and this process's incarnation: each acquisition its own owner.
    expect(heldInside).toMatch(new RegExp(`^${HOST}\\|${process.pid}\\|mount\\|[0-9a-z]+\\|[0-9a-z]{10,}$`));
    expect(await storeHolder(store, 'v1')).toBeUndefined();
    let again: string | undefined;
    await locks.withLock('v1', 'mount', async () => {
      again = await storeHolder(store, 'v1');
    });
    expect(again).toMatch(new RegExp(`^${HOST}\\|${process.pid}\\|mount\\|`));
    expect(again).not.toBe(heldInside);
    expect(again!.split('|')[4]).toBe(heldInside!.split('|')[4]);
  });

  it("reports a store lock it could not release, and still answers with fn's value", async () => {
    const store = openStore();
    store.unlock = async () => {
      throw new Error('etcd did not answer');
    };
    const heard: string[] = [];
    const locks = locksOn(store, { onUnlockError: (v, err) => heard.push(`${v}: ${err.message}`) });
    expect(await locks.withLock('v1', 'mount', async () => 7)).toBe(7);
    expect(heard).toEqual(['v1: etcd did not answer']);
  });

  it('releases the lock when fn throws, passing the error on unchanged', async () => {
    const store = openStore();
    const locks = locksOn(store, { waitMs: 50 });
    const boom = new Error('boom');
    await expect(locks.withLock('v1', 'mount', async () => Promise.reject(boom))).rejects.toBe(boom);
    expect(await storeHolder(store, 'v1')).toBeUndefined();
    await expect(locks.withLock('v1', 'unmount', async () => 'again')).resolves.toBe('again');
  });

  it('a second caller on the same volume waits, then runs after the first has finished', async () => {
    const locks = locksOn(openStore(), { waitMs: 10_000 });
    const events: string[] = [];
    const hold = deferred();
    const entered = deferred();
    const first = locks.withLock('v1', 'mount', async () => {
      events.push('first start');
      entered.resolve();
      await hold.promise;
      events.push('first end');
      return 'first';
    });
    await entered.promise;
    const second = locks.withLock('v1', 'unmount', async () => {
      events.push('second start');
      return 'second';
    });
    // Let the second caller run as far as it can: it must not get in while the first holds the lock.
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    expect(events).toEqual(['first start']);

    hold.resolve();
    expect(await within(Promise.all([first, second]), 5_000)).toEqual(['first', 'second']);
    expect(events).toEqual(['first start', 'first end', 'second start']);
  });

  it('answers BUSY after waitMs, naming the op, process and host holding the volume', async () => {
    const store = openStore();
    const locks = locksOn(store, { waitMs: 50 });
    const hold = deferred();
    const entered = deferred();
    const first = locks.withLock('v1', 'mount', async () => {
      entered.resolve();
      await hold.promise;
    });
    await entered.promise;

    let ran = false;
    const err = await failure(
      locks.withLock('v1', 'remove', async () => {
        ran = true;
      }),
    );
    expect(ran).toBe(false);
    expect(err.code).toBe('BUSY');
    expect(err.retryable).toBe(true);
    expect(err.message).toBe(
      `volume v1 is busy with another operation (mount by process ${process.pid} on host ${HOST}); ` +
        'remove was not started. Try again in a few seconds.',
    );
    // The refused caller did not disturb the holder's store lock.
    expect(await storeHolder(store, 'v1')).toMatch(new RegExp(`^${HOST}\\|${process.pid}\\|mount\\|`));
    hold.resolve();
    await first;
  });

  it('different volumes do not block each other', async () => {
    const locks = locksOn(openStore(), { waitMs: 50 });
    const hold = deferred();
    const entered = deferred();
    const first = locks.withLock('v1', 'mount', async () => {
      entered.resolve();
      await hold.promise;
    });
    await entered.promise;
    // With a 50 ms wait, v2 would be BUSY if it queued behind v1.
    await expect(locks.withLock('v2', 'mount', async () => 'v2')).resolves.toBe('v2');
    await expect(locks.withLock('v1-other', 'mount', async () => 'v1-other')).resolves.toBe('v1-other');
    hold.resolve();
    await first;
  });

  it('three concurrent waiters on one volume never run at the same time', async () => {
    const locks = locksOn(openStore(), { waitMs: 10_000 });
    let active = 0;
    let maxActive = 0;
    const ran: string[] = [];
    const op = (name: string) =>
      locks.withLock('v1', name, async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
        ran.push(name);
        active--;
        return name;
      });
    const all = Promise.all([op('a'), op('b'), op('c'), op('d')]);
    expect(await within(all, 10_000)).toEqual(['a', 'b', 'c', 'd']);
    expect(maxActive).toBe(1);
    expect(ran.sort()).toEqual(['a', 'b', 'c', 'd']);
  });
});

describe('VolumeLocks and the store lock of other holders', () => {
  it('breaks a lock held by a dead process of this host and takes it', async () => {
    const store = openStore();
    const pid = await deadPid();
    const stale = `${HOST}|${pid}|mount|x`;
    expect((await store.tryLock('volume/v1', stale, 60_000)).acquired).toBe(true);

    const locks = locksOn(store, { waitMs: 5_000 });
    const holder = await within(
      locks.withLock('v1', 'unmount', () => storeHolder(store, 'v1')),
      5_000,
    );
    expect(holder).toMatch(new RegExp(`^${HOST}\\|${process.pid}\\|unmount\\|`));
    expect(await storeHolder(store, 'v1')).toBeUndefined();
  });

  it('breaks a lock an earlier process with our pid left (a container restarted after a crash)', async () => {
    const store = openStore();
    const stale = `${HOST}|${process.pid}|mount|1a2b3c4d|0123456789ab`;
    expect((await store.tryLock('volume/v1', stale, 60_000)).acquired).toBe(true);
    const holder = await within(
      locksOn(store, { waitMs: 5_000 }).withLock('v1', 'unmount', () => storeHolder(store, 'v1')),
      5_000,
    );
    expect(holder).toMatch(new RegExp(`^${HOST}\\|${process.pid}\\|unmount\\|`));
  });

  it('does not break a lock held by a live process of this host', async () => {
    const store = openStore();
    const child = execa('sleep', ['30']);
    try {
      const pid = child.pid!;
      expect((await store.tryLock('volume/v1', `${HOST}|${pid}|create|y`, 60_000)).acquired).toBe(true);
      const err = await failure(locksOn(store, { waitMs: 100 }).withLock('v1', 'mount', async () => 1));
      expect(err.code).toBe('BUSY');
      expect(err.message).toContain(`(create by process ${pid} on host ${HOST})`);
      expect(await storeHolder(store, 'v1')).toBe(`${HOST}|${pid}|create|y`);
    } finally {
      child.kill('SIGKILL');
      await child.catch(() => undefined);
    }
  });

  it('does not break a lock of another host, even when a process with its pid is dead here', async () => {
    const store = openStore();
    const pid = await deadPid();
    const theirs = `otherhost|${pid}|mount|z`;
    expect((await store.tryLock('volume/v1', theirs, 60_000)).acquired).toBe(true);

    const err = await failure(locksOn(store, { waitMs: 100 }).withLock('v1', 'unmount', async () => 1));
    expect(err.code).toBe('BUSY');
    expect(err.message).toBe(
      `volume v1 is busy with another operation (mount by process ${pid} on host otherhost); ` +
        'unmount was not started. Try again in a few seconds.',
    );
    expect(await storeHolder(store, 'v1')).toBe(theirs);
  });

  it('a live holder on another host keeps the volume: BUSY', async () => {
    const store = openStore();
    const theirs = `otherhost|${process.pid}|mount|x`;
    expect((await store.tryLock('volume/v1', theirs, 60_000)).acquired).toBe(true);
    const err = await failure(locksOn(store, { waitMs: 100 }).withLock('v1', 'mount', async () => 1));
    expect(err.code).toBe('BUSY');
    expect(err.message).toContain(`(mount by process ${process.pid} on host otherhost)`);
    expect(await storeHolder(store, 'v1')).toBe(theirs);
  });

  it("takes over another host's lock once its ttl has passed", async () => {
    const store = openStore();
    expect((await store.tryLock('volume/v1', 'otherhost|1|mount|x', 1)).acquired).toBe(true);
    const locks = locksOn(store);
    await expect(
      within(
        locks.withLock('v1', 'mount', async () => 'taken'),
        5_000,
      ),
    ).resolves.toBe('taken');
  });

  it('asks isProcessAlive about holders of this host only', async () => {
    const store = openStore();
    const asked: number[] = [];
    const locks = locksOn(store, {
      waitMs: 5_000,
      isProcessAlive: (pid) => {
        asked.push(pid);
        return false;
      },
    });
    await store.tryLock('volume/v1', `${HOST}|4242|mount|x`, 60_000);
    await expect(
      within(
        locks.withLock('v1', 'mount', async () => 'ok'),
        5_000,
      ),
    ).resolves.toBe('ok');
    expect(asked).toEqual([4242]);

    await store.tryLock('volume/v2', 'elsewhere|4343|mount|x', 60_000);
    const busy = locksOn(store, {
      waitMs: 50,
      isProcessAlive: (pid) => {
        asked.push(pid);
        return false;
      },
    });
    expect((await failure(busy.withLock('v2', 'mount', async () => 1))).code).toBe('BUSY');
    expect(asked).toEqual([4242]);
  });

  it('answers BUSY without a holder name when the lock owner string is not one of ours', async () => {
    const store = openStore();
    await store.tryLock('volume/v1', 'garbage', 60_000);
    const err = await failure(locksOn(store, { waitMs: 50 }).withLock('v1', 'mount', async () => 1));
    expect(err.code).toBe('BUSY');
    expect(err.message).toBe(
      'volume v1 is busy with another operation; mount was not started. Try again in a few seconds.',
    );
  });
});

describe('two VolumeLocks on one database (two processes)', () => {
  it('exclude each other: the second waits for the first, or answers BUSY when its wait runs out', async () => {
    const storeA = openStore();
    const storeB = openStore();
    const a = new VolumeLocks(storeA, { host: 'h1', waitMs: 5_000, ttlMs: 60_000 });
    const b = new VolumeLocks(storeB, { host: 'h1', waitMs: 10_000, ttlMs: 60_000 });
    const quickB = new VolumeLocks(storeB, { host: 'h1', waitMs: 50, ttlMs: 60_000 });

    const events: string[] = [];
    const hold = deferred();
    const entered = deferred();
    const first = a.withLock('v1', 'mount', async () => {
      events.push('a start');
      entered.resolve();
      await hold.promise;
      events.push('a end');
    });
    await entered.promise;

    // Same pid as the holder (both "processes" are this test): never taken for a dead holder.
    const err = await failure(quickB.withLock('v1', 'remove', async () => events.push('quick b')));
    expect(err.code).toBe('BUSY');
    expect(err.message).toContain(`(mount by process ${process.pid} on host h1)`);

    const refused = storeB.nextRefusal();
    const second = b.withLock('v1', 'unmount', async () => {
      events.push('b start');
    });
    await within(refused, 5_000); // b found the volume taken and is polling
    expect(events).toEqual(['a start']);
    hold.resolve();
    await within(Promise.all([first, second]), 10_000);
    expect(events).toEqual(['a start', 'a end', 'b start']);
    expect(await storeHolder(storeA, 'v1')).toBeUndefined();
  });

  it('other volumes stay free across the two', async () => {
    const a = new VolumeLocks(openStore(), { host: 'h1', waitMs: 50, ttlMs: 60_000 });
    const b = new VolumeLocks(openStore(), { host: 'h2', waitMs: 50, ttlMs: 60_000 });
    const hold = deferred();
    const entered = deferred();
    const first = a.withLock('v1', 'mount', async () => {
      entered.resolve();
      await hold.promise;
    });
    await entered.promise;
    await expect(b.withLock('v2', 'mount', async () => 'v2')).resolves.toBe('v2');
    expect((await failure(b.withLock('v1', 'mount', async () => 1))).message).toContain('on host h1');
    hold.resolve();
    await first;
    await expect(b.withLock('v1', 'mount', async () => 'now')).resolves.toBe('now');
  });
});
