import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EtcdStore } from '../../src/state/etcd-store.js';
import { failure } from '../helpers/failure.js';
import { createTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { type EtcdService, startEtcd } from '../services/etcd.js';

/**
 * Two hosts (two runtimes with fake kernels) on one real etcd, each store with the daemon's read
 * cache: Get and List follow the other host within the watch's lag, this host's own changes show
 * at once, Remove is still refused from etcd's current state, and Get says when it is stale.
 */
let etcd: EtcdService;
let prefix = 0;
let hosts: TestRuntime[] = [];

beforeAll(async () => {
  etcd = await startEtcd();
}, 60_000);
afterAll(async () => {
  await etcd?.stop();
});
afterEach(async () => {
  etcd.resume();
  for (const h of hosts) await h.cleanup();
  hosts = [];
});

async function twoHosts(): Promise<[TestRuntime, TestRuntime]> {
  const p = `/mhc-${process.pid}-${++prefix}`;
  const make = async (hostId: string) => {
    const store = new EtcdStore({
      endpoints: [etcd.endpoint],
      prefix: p,
      requestTimeoutMs: 1000,
      readCache: { heartbeatMs: 100, staleAfterMs: 300 },
    });
    const t = await createTestRuntime({
      flags: { hostId, drivers: ['local', 'nfs'], nfs: { server: 'nfs1', share: '/exports' } },
      store: () => store,
    });
    hosts.push(t);
    expect(await store.readCacheLive(10_000)).toBe(true);
    return t;
  };
  const a = await make('host-a');
  const b = await make('host-b');
  const server = join(a.dir, 'server');
  await mkdir(join(server, 'exports'), { recursive: true });
  for (const t of [a, b]) t.mounter.nfsServers.set('nfs1', server);
  return [a, b];
}

const ID_A = 'a'.repeat(64);

describe('two hosts on cached etcd stores', () => {
  it("own changes at once, the other host's within the lag; Remove refused from etcd's state", async () => {
    const [a, b] = await twoHosts();
    await a.manager.create('nfs', 'media', {});
    expect((await a.manager.list('nfs')).map((v) => v.name)).toEqual(['media']);
    await expect.poll(async () => (await b.manager.list('nfs')).map((v) => v.name)).toEqual(['media']);
    const mountpoint = await a.manager.mount('nfs', 'media', ID_A);
    expect(await a.manager.path('nfs', 'media')).toBe(mountpoint); // read at once, on the writer
    await expect
      .poll(async () => ((await b.manager.get('nfs', 'media')).status.mounts as unknown[]).length)
      .toBe(1);
    const err = await failure(b.manager.remove('nfs', 'media'));
    expect(err.code).toBe('IN_USE');
    await a.manager.unmount('nfs', 'media', ID_A);
    await b.manager.remove('nfs', 'media'); // b decides from etcd, not from its copy
    expect(await b.manager.list()).toEqual([]);
    await expect.poll(async () => a.manager.list()).toEqual([]);
  });

  it('Get answers from the copy while etcd hangs, and says it is stale', async () => {
    const [a] = await twoHosts();
    await a.manager.create('nfs', 'kept', {});
    expect((await a.manager.get('nfs', 'kept')).status.store).toBeUndefined();
    etcd.pause();
    await expect.poll(() => a.store.freshness?.().stale, { timeout: 10_000 }).toBe(true);
    const view = await a.manager.get('nfs', 'kept');
    expect(view.volume.name).toBe('kept');
    expect(view.status.store).toMatch(
      /^stale since \S+ \(etcd did not answer the watch for \d+ ms\): as of revision \d+$/,
    );
    expect((await a.manager.list()).map((v) => v.name)).toEqual(['kept']);
    etcd.resume();
    await expect.poll(() => a.store.freshness?.().stale, { timeout: 10_000 }).toBe(false);
    expect((await a.manager.get('nfs', 'kept')).status.store).toBeUndefined();
  });
});
