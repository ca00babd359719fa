import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EtcdStore } from '../../src/state/etcd-store.js';
import { migrateStore } from '../../src/state/migrate.js';
import { SqliteStore } from '../../src/state/sqlite-store.js';
import { failure } from '../helpers/failure.js';
import { type EtcdService, startEtcd } from '../services/etcd.js';
import { volume } from './store-contract.js';

/** `stowage state migrate`: a single host's SQLite store into a real etcd, verified, or nothing. */
const BIN = join(import.meta.dirname, '..', '..', 'bin', 'stowage.js');
let etcd: EtcdService;
let dir: string;
let n = 0;

beforeAll(async () => {
  etcd = await startEtcd();
  dir = await mkdtemp(join(tmpdir(), 'stowage-migrate-'));
}, 60_000);
afterAll(async () => {
  await etcd?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function populated(): Promise<{ path: string; sqlite: SqliteStore }> {
  const path = join(dir, `state-${++n}.db`);
  const sqlite = new SqliteStore(path);
  await sqlite.upsertHost({
    id: 'h1',
    identity: { instanceId: 'i-1' },
    lastSeen: '2026-11-25T00:00:00.000Z',
  });
  for (const name of ['db', 'media', 'scratch'])
    await sqlite.insertVolume(volume(name, { fields: { n: name } }));
  await sqlite.putAttachment({
    volume: 'db',
    host: 'h1',
    device: '/dev/xvdf',
    state: 'attached',
    updatedAt: 't1',
  });
  await sqlite.putMount({
    volume: 'db',
    host: 'h1',
    mountpoint: '/var/lib/stowage/volumes/db',
    refs: { [`${'a'.repeat(64)}`]: 2, 'pod:u1:db': 1 },
    state: 'mounted',
    updatedAt: 't2',
  });
  return { path, sqlite };
}

const etcdAt = (prefix: string) =>
  new EtcdStore({ endpoints: [etcd.endpoint], prefix, requestTimeoutMs: 3000 });

describe('state migrate', () => {
  it('copies hosts, volumes, attachments and mounts, and the target reads back the same', async () => {
    const { sqlite } = await populated();
    const target = etcdAt(`/migrate-${n}`);
    expect(await migrateStore(sqlite, target)).toEqual({ hosts: 1, volumes: 3, attachments: 1, mounts: 1 });
    expect(await target.getVolumeState('db')).toEqual(await sqlite.getVolumeState('db'));
    expect(await target.listVolumes()).toEqual(await sqlite.listVolumes());
    expect(await target.listHosts()).toEqual(await sqlite.listHosts());
    await target.close();
    await sqlite.close();
  });

  it('refuses a target that holds volumes, and a source with unfinished operations; copies nothing', async () => {
    const { sqlite } = await populated();
    const target = etcdAt(`/migrate-${n}`);
    await target.insertVolume(volume('other'));
    const full = await failure(migrateStore(sqlite, target));
    expect(full.code).toBe('CONFLICT');
    expect(full.message).toBe(
      'the target store already holds 1 volume (other); migrate into an empty store (for etcd, a new prefix)',
    );
    expect((await target.listVolumes()).map((v) => v.name)).toEqual(['other']);

    const empty = etcdAt(`/migrate-${n}-empty`);
    await sqlite.beginIntent({ volume: 'db', host: 'h1', op: 'unmount', details: {} });
    const busy = await failure(migrateStore(sqlite, empty));
    expect(busy.message).toBe(
      'host h1 has 1 unfinished operation (unmount of db); start stowage daemon on it once to finish them, stop it, then migrate',
    );
    expect(await empty.listVolumes()).toEqual([]);
    for (const s of [target, empty, sqlite]) await s.close();
  });

  it('writes and verifies etcd in batched requests: 1,000 volumes in a few dozen, not thousands', async () => {
    const path = join(dir, `state-${++n}.db`);
    const sqlite = new SqliteStore(path);
    await sqlite.upsertHost({ id: 'h1', identity: {}, lastSeen: 't0' });
    for (let i = 0; i < 1000; i++) {
      const name = `vol-${String(i).padStart(4, '0')}`;
      await sqlite.insertVolume(volume(name));
      if (i % 10 === 0) {
        await sqlite.putAttachment({
          volume: name,
          host: 'h1',
          device: '/dev/xvdf',
          state: 'attached',
          updatedAt: 't1',
        });
        await sqlite.putMount({
          volume: name,
          host: 'h1',
          mountpoint: `/m/${name}`,
          refs: { a: 1 },
          state: 'mounted',
          updatedAt: 't2',
        });
      }
    }
    const target = etcdAt(`/migrate-${n}`);
    const before = await etcdRequests();
    expect(await migrateStore(sqlite, target)).toEqual({
      hosts: 1,
      volumes: 1000,
      attachments: 100,
      mounts: 100,
    });
    // 1,201 records: 10 txns of up to 128 writes, the empty check, and 4 paged reads to verify.
    expect((await etcdRequests()) - before).toBeLessThanOrEqual(20);
    expect((await target.getVolumeState('vol-0990')).mounts.map((m) => m.mountpoint)).toEqual([
      '/m/vol-0990',
    ]);

    // etcd to etcd (a new prefix): read in pages as well, and the same again.
    const copy = etcdAt(`/migrate-${n}-copy`);
    expect(await migrateStore(target, copy)).toEqual({
      hosts: 1,
      volumes: 1000,
      attachments: 100,
      mounts: 100,
    });
    expect(await copy.listVolumes()).toEqual(await sqlite.listVolumes());
    for (const s of [copy, target, sqlite]) await s.close();
  });

  it('runs as `stowage state migrate --from sqlite:… --to etcd://…`', async () => {
    const { path, sqlite } = await populated();
    await sqlite.close();
    const res = await execa(
      'node',
      [
        '--no-warnings',
        BIN,
        '--config',
        '/dev/null',
        'state',
        'migrate',
        '--from',
        `sqlite:${path}`,
        '--to',
        `${etcd.url}/migrate-cli`,
      ],
      { reject: false, timeout: 30_000 },
    );
    expect(res.stderr).toBe('');
    expect(res.stdout).toBe(
      `migrated 3 volumes, 1 attachments, 1 mounts and 1 hosts from sqlite:${path} to ${etcd.url}/migrate-cli; verified`,
    );
    expect(res.exitCode).toBe(0);
    const target = etcdAt('/migrate-cli');
    expect((await target.listVolumes()).map((v) => v.name)).toEqual(['db', 'media', 'scratch']);
    await target.close();
  });
});

/** etcd's own count of KV requests served (Range and Txn), from its /metrics. */
async function etcdRequests(): Promise<number> {
  const text = await (await fetch(`${etcd.endpoint}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (/^grpc_server_handled_total\{.*grpc_method="(Range|Txn)"/.test(line))
      total += Number(line.split(' ')[1]);
  }
  return total;
}
