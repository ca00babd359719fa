import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CsiContext } from '../../csi/context.js';
import { csiServices } from '../../csi/plugin.js';
import { type CsiServer, serveCsi } from '../../csi/server.js';
import { driverTraits } from '../../drivers/catalog.js';
import { registerBuiltins } from '../../drivers/index.js';
import { StowageError } from '../../src/base/errors.js';
import { DriverRegistry } from '../../src/core/registry.js';
import { type MemorySnapshots, snapshotDisk } from '../fakes/snapshot-disk.js';
import { createTestRuntime, TEST_HOST, type TestRuntime } from '../helpers/runtime.js';
import { type CsiClient, csiClient } from './client.js';

/**
 * The CSI controller's snapshot RPCs (csi/snapshots.ts) over a real unix socket with the suite's
 * grpc-js client, on the real core with a driver whose snapshots are kept in memory
 * (test/fakes/snapshot-disk.ts): each RPC's answer, the spec's status codes, idempotency, and
 * paging. A driver without snapshots (local) advertises none and answers UNIMPLEMENTED.
 */

let t: TestRuntime;
let mem: MemorySnapshots;
let servers: CsiServer[];
let clients: CsiClient[];

beforeEach(async () => {
  const disk = snapshotDisk();
  mem = disk.snapshots;
  const registry = new DriverRegistry();
  await registerBuiltins(registry);
  registry.register('snapdisk', () => disk.driver);
  t = await createTestRuntime({ registry, flags: { drivers: ['local', 'snapdisk'] } });
  servers = [];
  clients = [];
  await t.manager.create('snapdisk', 'db', {});
  await t.manager.create('snapdisk', 'web', {});
});

afterEach(async () => {
  for (const c of clients) c.close();
  for (const s of servers) await s.close(1000);
  await t.cleanup();
});

/** The controller of `driver` served on a socket in the test's directory, and a client of it. */
async function controller(driver = 'snapdisk'): Promise<CsiClient> {
  const ctx: CsiContext = {
    driver,
    // The in-memory driver is a block disk like ebs.
    traits: driverTraits(driver === 'snapdisk' ? 'ebs' : driver)!,
    manager: t.manager,
    hosts: t.runtime.hosts,
    nodeId: TEST_HOST,
    version: '0.0.0-test',
    kubeletDir: join(t.dir, 'kubelet'),
    log: pino({ level: 'silent' }),
    ready: () => true,
    checkStore: async () => undefined,
    nodeTopology: async () => undefined,
  };
  const socket = join(t.dir, `${driver}.sock`);
  servers.push(await serveCsi(`unix://${socket}`, csiServices(ctx, 'controller'), ctx.log));
  const client = csiClient(socket);
  clients.push(client);
  return client;
}

/** The gRPC status code a call fails with. */
async function code(p: Promise<unknown>): Promise<number> {
  try {
    await p;
  } catch (err) {
    return (err as { code: number }).code;
  }
  throw new Error('expected the call to fail');
}

async function capabilities(c: CsiClient): Promise<string[]> {
  const res = await c.call('Controller', 'ControllerGetCapabilities', {});
  return (res.capabilities ?? []).map((cap) => cap.rpc.type ?? '');
}

describe('capabilities', () => {
  it('advertises snapshots for a driver that takes them, and not for one that does not', async () => {
    const snap = await controller();
    const caps = await capabilities(snap);
    expect(caps).toEqual(
      expect.arrayContaining(['CREATE_DELETE_SNAPSHOT', 'LIST_SNAPSHOTS', 'GET_SNAPSHOT']),
    );

    const local = await controller('local');
    const localCaps = await capabilities(local);
    expect(localCaps).not.toContain('CREATE_DELETE_SNAPSHOT');
    expect(localCaps).not.toContain('LIST_SNAPSHOTS');
    await t.manager.create('local', 'loc', {});
    expect(await code(local.call('Controller', 'CreateSnapshot', { sourceVolumeId: 'loc', name: 's' }))).toBe(
      status.UNIMPLEMENTED,
    );
    expect(await code(local.call('Controller', 'ListSnapshots', {}))).toBe(status.UNIMPLEMENTED);
  });
});

describe('CreateSnapshot', () => {
  it('answers the snapshot (id, source, creation time, size, not ready); again, the same; ready once complete', async () => {
    const c = await controller();
    const req = { sourceVolumeId: 'db', name: 'snapshot-1b2c', parameters: { 'csi.storage.k8s.io/x': 'y' } };
    const first = (await c.call('Controller', 'CreateSnapshot', req)).snapshot;
    const made = [...mem.all.values()][0]!;
    expect(first).toEqual({
      snapshotId: made.id,
      sourceVolumeId: 'db',
      creationTime: { seconds: String(made.createdAt.getTime() / 1000), nanos: 0 },
      sizeBytes: String(2 * 1024 ** 3),
      readyToUse: false,
      groupSnapshotId: '',
    });
    expect((await c.call('Controller', 'CreateSnapshot', req)).snapshot).toEqual(first);
    mem.finish(made.id);
    expect((await c.call('Controller', 'CreateSnapshot', req)).snapshot).toEqual({
      ...first,
      readyToUse: true,
    });
    expect(mem.all.size).toBe(1);
  });

  it('the spec codes: missing fields INVALID_ARGUMENT, unknown source NOT_FOUND, name of another source ALREADY_EXISTS', async () => {
    const c = await controller();
    const cases: [Record<string, unknown>, number][] = [
      [{ name: 's' }, status.INVALID_ARGUMENT],
      [{ sourceVolumeId: 'db' }, status.INVALID_ARGUMENT],
      [{ sourceVolumeId: 'nope', name: 's' }, status.NOT_FOUND],
      [{ sourceVolumeId: 'not/a volume', name: 's' }, status.NOT_FOUND],
      [{ sourceVolumeId: 'db', name: 's', parameters: { type: 'fast' } }, status.INVALID_ARGUMENT],
    ];
    for (const [req, want] of cases) {
      expect(await code(c.call('Controller', 'CreateSnapshot', req)), JSON.stringify(req)).toBe(want);
    }
    expect(mem.all.size).toBe(0);
    await c.call('Controller', 'CreateSnapshot', { sourceVolumeId: 'db', name: 's' });
    expect(await code(c.call('Controller', 'CreateSnapshot', { sourceVolumeId: 'web', name: 's' }))).toBe(
      status.ALREADY_EXISTS,
    );
    expect(mem.all.size).toBe(1);
  });

  it('a throttled cloud is UNAVAILABLE (the sidecar retries) and nothing is taken', async () => {
    const c = await controller();
    mem.failNext('create', new StowageError('UNAVAILABLE', 'CreateSnapshot failed: RequestLimitExceeded'));
    expect(await code(c.call('Controller', 'CreateSnapshot', { sourceVolumeId: 'db', name: 's' }))).toBe(
      status.UNAVAILABLE,
    );
    expect(mem.all.size).toBe(0);
  });
});

describe('DeleteSnapshot and GetSnapshot', () => {
  it('delete twice succeeds; get then NOT_FOUND; missing id INVALID_ARGUMENT', async () => {
    const c = await controller();
    const { snapshot } = await c.call('Controller', 'CreateSnapshot', { sourceVolumeId: 'db', name: 's' });
    expect((await c.call('Controller', 'GetSnapshot', { snapshotId: snapshot.snapshotId })).snapshot).toEqual(
      snapshot,
    );
    await c.call('Controller', 'DeleteSnapshot', { snapshotId: snapshot.snapshotId });
    await c.call('Controller', 'DeleteSnapshot', { snapshotId: snapshot.snapshotId });
    expect(mem.all.size).toBe(0);
    expect(await code(c.call('Controller', 'GetSnapshot', { snapshotId: snapshot.snapshotId }))).toBe(
      status.NOT_FOUND,
    );
    expect(await code(c.call('Controller', 'DeleteSnapshot', {}))).toBe(status.INVALID_ARGUMENT);
    expect(await code(c.call('Controller', 'GetSnapshot', {}))).toBe(status.INVALID_ARGUMENT);
  });

  it('a snapshot stowage did not take is not shown (NOT_FOUND) and not deleted (FAILED_PRECONDITION)', async () => {
    const c = await controller();
    const foreign = mem.addForeign();
    expect(await code(c.call('Controller', 'GetSnapshot', { snapshotId: foreign }))).toBe(status.NOT_FOUND);
    expect(await code(c.call('Controller', 'DeleteSnapshot', { snapshotId: foreign }))).toBe(
      status.FAILED_PRECONDITION,
    );
    expect(mem.all.has(foreign)).toBe(true);
  });

  it('a throttled cloud on delete is UNAVAILABLE and the snapshot stays', async () => {
    const c = await controller();
    const { snapshot } = await c.call('Controller', 'CreateSnapshot', { sourceVolumeId: 'db', name: 's' });
    mem.failNext('delete', new StowageError('UNAVAILABLE', 'DeleteSnapshot failed: RequestLimitExceeded'));
    expect(await code(c.call('Controller', 'DeleteSnapshot', { snapshotId: snapshot.snapshotId }))).toBe(
      status.UNAVAILABLE,
    );
    expect(mem.all.size).toBe(1);
  });
});

describe('ListSnapshots', () => {
  async function take(c: CsiClient, n: number, volume = 'db'): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const res = await c.call('Controller', 'CreateSnapshot', {
        sourceVolumeId: volume,
        name: `${volume}-${i}`,
      });
      ids.push(res.snapshot.snapshotId);
    }
    return ids;
  }
  const idsOf = (res: { entries?: { snapshot: { snapshotId: string } }[] }) =>
    (res.entries ?? []).map((e) => e.snapshot.snapshotId);

  it('lists all, by source volume, by id; an unknown id or volume lists nothing; only stowage snapshots', async () => {
    const c = await controller();
    const db = await take(c, 2);
    const web = await take(c, 1, 'web');
    mem.addForeign();
    expect(idsOf(await c.call('Controller', 'ListSnapshots', {}))).toEqual([...db, ...web]);
    expect(idsOf(await c.call('Controller', 'ListSnapshots', { sourceVolumeId: 'web' }))).toEqual(web);
    expect(idsOf(await c.call('Controller', 'ListSnapshots', { snapshotId: db[1] }))).toEqual([db[1]]);
    expect(
      idsOf(await c.call('Controller', 'ListSnapshots', { snapshotId: 'snap-00000000000000fff' })),
    ).toEqual([]);
    expect(idsOf(await c.call('Controller', 'ListSnapshots', { sourceVolumeId: 'not/a volume' }))).toEqual(
      [],
    );
    const entry = (await c.call('Controller', 'ListSnapshots', { snapshotId: web[0] })).entries?.[0]
      ?.snapshot;
    expect(entry).toMatchObject({
      sourceVolumeId: 'web',
      readyToUse: false,
      sizeBytes: String(2 * 1024 ** 3),
    });
  });

  it('pages with max_entries and next_token until the token is empty', async () => {
    const c = await controller();
    const ids = await take(c, 5);
    const seen: string[] = [];
    let token = '';
    let pages = 0;
    do {
      const res = await c.call('Controller', 'ListSnapshots', { maxEntries: 2, startingToken: token });
      expect(res.entries?.length).toBeLessThanOrEqual(2);
      seen.push(...idsOf(res));
      token = res.nextToken ?? '';
      pages++;
    } while (token !== '' && pages < 10);
    expect(pages).toBe(3);
    expect(seen).toEqual(ids);
  });

  it('a starting_token it did not give is ABORTED; a negative max_entries INVALID_ARGUMENT', async () => {
    const c = await controller();
    await take(c, 1);
    expect(await code(c.call('Controller', 'ListSnapshots', { startingToken: 'not-a-token' }))).toBe(
      status.ABORTED,
    );
    expect(await code(c.call('Controller', 'ListSnapshots', { maxEntries: -1 }))).toBe(
      status.INVALID_ARGUMENT,
    );
  });
});
