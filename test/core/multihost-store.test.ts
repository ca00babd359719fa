import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type Logger, pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { registerHost } from '../../src/core/hosts.js';
import { EtcdStore } from '../../src/state/etcd-store.js';
import { failure } from '../helpers/failure.js';
import { createTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { type EtcdService, startEtcd } from '../services/etcd.js';

/**
 * Two hosts (two runtimes, each with its own fake kernel) sharing one real etcd: NFS volumes are
 * multi-host, Remove is refused while any host mounts them, access=single-host allows one host at
 * a time, and a host whose lease ran out is "gone".
 */
let etcd: EtcdService;
let prefix = 0;
let hosts: TestRuntime[] = [];
let server: string;

beforeAll(async () => {
  etcd = await startEtcd();
}, 60_000);
afterAll(async () => {
  await etcd?.stop();
});
afterEach(async () => {
  for (const h of hosts) await h.cleanup();
  hosts = [];
});

async function twoHosts(
  flags: Record<string, unknown> = {},
  logOfB?: Logger,
): Promise<[TestRuntime, TestRuntime]> {
  const p = `/mh-${process.pid}-${++prefix}`;
  const make = async (hostId: string, log?: Logger) => {
    const t = await createTestRuntime({
      flags: { hostId, drivers: ['local', 'nfs'], nfs: { server: 'nfs1', share: '/exports' }, ...flags },
      store: () => new EtcdStore({ endpoints: [etcd.endpoint], prefix: p, requestTimeoutMs: 2000 }),
      ...(log ? { log } : {}),
    });
    hosts.push(t);
    return t;
  };
  const a = await make('host-a');
  const b = await make('host-b', logOfB);
  server = join(a.dir, 'server');
  await mkdir(join(server, 'exports'), { recursive: true });
  for (const t of [a, b]) t.mounter.nfsServers.set('nfs1', server);
  return [a, b];
}

const ID_A = 'a'.repeat(64);
const ID_B = 'b'.repeat(64);

describe('shared filesystems on a shared store', () => {
  it('mounts on both hosts; Remove from either is refused while any host mounts it', async () => {
    const [a, b] = await twoHosts();
    await a.manager.create('nfs', 'media', {});
    expect((await b.manager.list('nfs')).map((v) => v.name)).toEqual(['media']);
    expect(b.manager.capabilities('nfs')).toEqual({ scope: 'global' });
    await a.manager.mount('nfs', 'media', ID_A);
    await b.manager.mount('nfs', 'media', ID_B);
    expect((await a.store.getMounts('media')).map((m) => m.host)).toEqual(['host-a', 'host-b']);
    await a.manager.unmount('nfs', 'media', ID_A);
    const err = await failure(a.manager.remove('nfs', 'media'));
    expect(err.code).toBe('IN_USE');
    expect(err.message).toBe(
      'volume media is in use by 1 mount on host host-b; stop the containers or pods using it, then remove it again',
    );
    await b.manager.unmount('nfs', 'media', ID_B);
    await a.manager.remove('nfs', 'media');
    expect(await b.manager.list()).toEqual([]);
  });

  it('access=single-host: one host at a time, named in the refusal', async () => {
    const [a, b] = await twoHosts();
    await a.manager.create('nfs', 'solo', { access: 'single-host' });
    await a.manager.mount('nfs', 'solo', ID_A);
    const err = await failure(b.manager.mount('nfs', 'solo', ID_B));
    expect(err.code).toBe('IN_USE');
    expect(err.message).toBe(
      'volume solo is single-host (access=single-host) and mounted on host host-a; unmount it there first',
    );
    expect(b.mounter.count('mount')).toBe(0);
    await a.manager.unmount('nfs', 'solo', ID_A);
    await b.manager.mount('nfs', 'solo', ID_B);
    expect((await a.store.getMounts('solo')).map((m) => m.host)).toEqual(['host-b']);
  });

  it("a gone host's single-host mount is taken over only with hosts.takeOverGone", async () => {
    const [a, b] = await twoHosts();
    await a.manager.create('nfs', 'solo', { access: 'single-host' });
    await a.manager.mount('nfs', 'solo', ID_A);
    // As the daemons do: records with a lease; a host without one is never taken for gone.
    await registerHost(a.store, 'host-a', [], a.runtime.log, {}, { leaseTtlSeconds: 1 });
    await registerHost(b.store, 'host-b', [], b.runtime.log, {}, { leaseTtlSeconds: 30 });
    expect(await b.store.liveHosts!()).toEqual(new Set(['host-a', 'host-b']));
    // host-a dies: its lease is not revoked, it runs out.
    await (a.store as EtcdStore).close({ revokeLeases: false });
    await expect.poll(async () => [...(await b.store.liveHosts!())], { timeout: 10_000 }).toEqual(['host-b']);
    const err = await failure(b.manager.mount('nfs', 'solo', ID_B));
    expect(err.message).toBe(
      'volume solo is single-host (access=single-host) and mounted on host host-a, which is gone (its lease expired); ' +
        'once you know it is down, create the volume with preempt=true (or set hosts.takeOverGone) to take it over',
    );
    const c = await createTestRuntime({
      sameHostAs: b,
      flags: { hostId: 'host-b', drivers: ['local', 'nfs'], hosts: { takeOverGone: true } },
      store: () =>
        new EtcdStore({
          endpoints: [etcd.endpoint],
          prefix: `/mh-${process.pid}-${prefix}`,
          requestTimeoutMs: 2000,
        }),
    });
    hosts.push(c);
    await c.manager.mount('nfs', 'solo', ID_B);
    expect((await c.store.getMounts('solo')).map((m) => m.host)).toEqual(['host-b']);
  });

  it("preempt=true takes a gone host's single-host mount over, logged; a live host's mount it never takes", async () => {
    const logLines: string[] = [];
    const logOfB = pino({ level: 'info' }, { write: (line: string) => logLines.push(line) });
    const [a, b] = await twoHosts({}, logOfB);
    await a.manager.create('nfs', 'solo', { access: 'single-host', preempt: 'true' });
    await a.manager.mount('nfs', 'solo', ID_A);
    await registerHost(a.store, 'host-a', [], a.runtime.log, {}, { leaseTtlSeconds: 1 });
    await registerHost(b.store, 'host-b', [], b.runtime.log, {}, { leaseTtlSeconds: 30 });
    // host-a alive: preempt does not take a mount its containers may still be writing through.
    const refused = await failure(b.manager.mount('nfs', 'solo', ID_B));
    expect(refused.code).toBe('IN_USE');
    expect(refused.message).toBe(
      'volume solo is single-host (access=single-host) and mounted on host host-a; unmount it there first',
    );
    // host-a dies: its lease is not revoked, it runs out.
    await (a.store as EtcdStore).close({ revokeLeases: false });
    await expect.poll(async () => [...(await b.store.liveHosts!())], { timeout: 10_000 }).toEqual(['host-b']);
    const target = await b.manager.mount('nfs', 'solo', ID_B);
    expect(b.mounter.table.has(target)).toBe(true);
    expect((await b.store.getMounts('solo')).map((m) => m.host)).toEqual(['host-b']);
    const takeover = logLines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.msg === 'single-host volume: taking it over from a gone host');
    expect(takeover).toEqual([
      expect.objectContaining({ level: 40, volume: 'solo', from: 'host-a', refs: 1, by: 'preempt=true' }),
    ]);
  });
});
