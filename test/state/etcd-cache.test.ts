import { randomBytes } from 'node:crypto';
import { Etcd3 } from 'etcd3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { pollUntil } from '../../src/base/backoff.js';
import type { ReadCacheLog } from '../../src/state/etcd-cache.js';
import { EtcdStore, type EtcdStoreOptions } from '../../src/state/etcd-store.js';
import type { MountRecord } from '../../src/state/store.js';
import { failure } from '../helpers/failure.js';
import { type EtcdService, startEtcd } from '../services/etcd.js';
import { storeContract, volume } from './store-contract.js';

/**
 * The etcd store with its watch-fed read cache (src/state/etcd-cache.ts), against a real etcd:
 * the contract, read-your-own-writes, two stores (two hosts) seeing each other's changes, and the
 * watch dropping, falling behind a compaction, and etcd restarting. Waits are polls with deadlines.
 */

let etcd: EtcdService;
let admin: Etcd3;
beforeAll(async () => {
  etcd = await startEtcd();
  admin = new Etcd3({ hosts: [etcd.endpoint] });
});
afterAll(async () => {
  admin?.close();
  await etcd?.stop();
});

const opened: EtcdStore[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
});

let seq = 0;
const freshPrefix = () => `/c-${randomBytes(4).toString('hex')}-${++seq}`;
const now = () => new Date().toISOString();

interface Logged {
  level: string;
  msg: string;
  details: Record<string, unknown>;
}

function cached(over: Partial<EtcdStoreOptions> = {}, logged: Logged[] = []): EtcdStore {
  const log: ReadCacheLog = (level, msg, details) => logged.push({ level, msg, details });
  const s = new EtcdStore({
    endpoints: [etcd.endpoint],
    prefix: freshPrefix(),
    requestTimeoutMs: 5000,
    readCache: { heartbeatMs: 100, log },
    ...over,
  });
  opened.push(s);
  return s;
}

async function live(s: EtcdStore): Promise<EtcdStore> {
  expect(await s.readCacheLive(10_000)).toBe(true);
  return s;
}

const mount = (volume: string, host: string, mountpoint: string): MountRecord => ({
  volume,
  host,
  mountpoint,
  refs: { a: 1 },
  state: 'mounted',
  updatedAt: now(),
});

async function waitFor(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 15_000) {
  await pollUntil(async () => ((await check()) ? true : undefined), {
    timeoutMs,
    initialDelayMs: 5,
    maxDelayMs: 50,
    what,
  });
}

/** etcd's own count of requests served (Range and Txn), from its /metrics. */
async function etcdReads(): Promise<number> {
  const text = await (await fetch(`${etcd.endpoint}/metrics`)).text();
  let n = 0;
  for (const line of text.split('\n')) {
    if (/^grpc_server_handled_total\{.*grpc_method="(Range|Txn)"/.test(line)) n += Number(line.split(' ')[1]);
  }
  return n;
}

storeContract(
  'etcd with the read cache',
  async () => live(cached()),
  async (s) => live(cached({ prefix: (s as EtcdStore).prefix })),
);

describe('EtcdStore read cache', () => {
  it("answers Get, Path, List and a host's own records from memory once warm: no etcd request", async () => {
    const s = await live(cached());
    for (let i = 0; i < 20; i++) await s.insertVolume(volume(`v${i}`));
    await s.putMount(mount('v3', 'here', '/m/v3'));
    await s.putMount(mount('v4', 'there', '/m/v4'));
    await s.putAttachment({
      volume: 'v5',
      host: 'here',
      device: '/dev/x',
      state: 'attached',
      updatedAt: now(),
    });
    const before = await etcdReads();
    for (let i = 0; i < 50; i++) {
      expect(await s.listVolumeSummaries('here')).toHaveLength(20);
      expect((await s.getVolumeState('v3')).mounts.map((m) => m.mountpoint)).toEqual(['/m/v3']);
      expect(await s.listVolumes()).toHaveLength(20);
      expect((await s.listMountsByHost('here')).map((m) => m.volume)).toEqual(['v3']);
      expect((await s.listAttachmentsByHost('here')).map((a) => a.volume)).toEqual(['v5']);
    }
    expect(await etcdReads()).toBe(before);
    await s.deleteMount('v3', 'here');
    expect(await s.listMountsByHost('here')).toEqual([]);
    expect((await s.listMountsByHost('there')).map((m) => m.volume)).toEqual(['v4']);
  });

  it('hands out the same frozen List answer until a volume or a mount changes', async () => {
    const s = await live(cached());
    await s.insertVolume(volume('a'));
    const first = await s.listVolumeSummaries('h');
    expect(await s.listVolumeSummaries('h')).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);
    await s.putMount(mount('a', 'h', '/m/a'));
    const second = await s.listVolumeSummaries('h');
    expect(second).not.toBe(first);
    expect(second).toEqual([
      { name: 'a', driver: 'local', createdAt: volume('a').createdAt, mountpoint: '/m/a' },
    ]);
    await s.putAttachment({ volume: 'a', host: 'h', device: '/dev/x', state: 'attached', updatedAt: now() });
    expect(await s.listVolumeSummaries('h')).toBe(second); // an attachment is not in the List
  });

  it("reads its own writes at once: a write answers only after the cache applied the write's revision", async () => {
    const s = await live(cached());
    for (let i = 0; i < 30; i++) {
      await s.insertVolume(volume(`own-${i}`));
      const seen = s.readCacheHealth()!.revision; // before anything else is awaited
      const { kvs } = await admin.kv.range({ key: Buffer.from(`${s.prefix}/volumes/own-${i}`) });
      expect(seen).toBeGreaterThanOrEqual(Number(kvs[0]!.mod_revision));
      expect((await s.getVolumeState(`own-${i}`)).volume?.name).toBe(`own-${i}`);
      await s.deleteMount(`own-${i}`, 'nowhere'); // deletes nothing: no event, still caught up
      await s.deleteVolume(`own-${i}`);
      expect((await s.listVolumeSummaries('h')).map((v) => v.name)).not.toContain(`own-${i}`);
    }
  });

  it("shows each store the other's changes within the watch's lag (two hosts)", async () => {
    const prefix = freshPrefix();
    const a = await live(cached({ prefix }));
    const b = await live(cached({ prefix }));
    const lags: number[] = [];
    for (let i = 0; i < 20; i++) {
      const [writer, reader] = i % 2 ? [a, b] : [b, a];
      const started = performance.now();
      await writer.insertVolume(volume(`x${i}`));
      await waitFor(
        async () => (await reader.getVolumeState(`x${i}`)).volume !== undefined,
        `x${i} on the other`,
      );
      lags.push(performance.now() - started);
    }
    await a.putMount(mount('x0', 'host-a', '/m/x0'));
    await waitFor(
      async () =>
        (await b.listVolumeSummaries('host-a')).find((v) => v.name === 'x0')?.mountpoint === '/m/x0',
      "a's mount in b's List",
    );
    expect((await b.listVolumeSummaries('host-b')).find((v) => v.name === 'x0')?.mountpoint).toBeUndefined();
    expect((await b.listVolumes()).map((v) => v.name).sort()).toEqual(
      (await a.listVolumes()).map((v) => v.name).sort(),
    );
    console.log(`cross-store visibility lag over 20 writes: max ${Math.max(...lags).toFixed(1)} ms`);
  });

  it('resumes a dropped watch from the next revision, without reading everything again', async () => {
    const logged: Logged[] = [];
    const prefix = freshPrefix();
    const s = await live(cached({ prefix }, logged));
    const other = cached({ prefix, readCache: undefined });
    await s.insertVolume(volume('before'));
    let release!: () => void;
    s.dropReadCacheWatch(new Promise<void>((r) => (release = r)));
    await waitFor(() => s.freshness().stale, 'the cache to notice the drop');
    await other.insertVolume(volume('during'));
    await other.putMount(mount('before', 'h', '/m/before'));
    expect((await s.getVolumeState('during')).volume).toBeUndefined(); // stale copy: not there yet
    release();
    await waitFor(async () => (await s.getVolumeState('during')).volume !== undefined, 'the resumed watch');
    expect((await s.getVolumeState('before')).mounts).toHaveLength(1);
    expect(s.readCacheHealth()).toMatchObject({ state: 'live', loads: 1, resumes: 1 });
    expect(logged.map((l) => l.msg)).toContain(
      'etcd read cache: lost the watch; reads answer from the last copy, marked stale',
    );
  });

  it('reads everything again when etcd compacted past the revision the watch would resume from', async () => {
    const logged: Logged[] = [];
    const prefix = freshPrefix();
    const s = await live(cached({ prefix }, logged));
    const other = cached({ prefix, readCache: undefined });
    await s.insertVolume(volume('gone'));
    await s.insertVolume(volume('kept'));
    let release!: () => void;
    const before = s.readCacheHealth()!.revision;
    s.dropReadCacheWatch(new Promise<void>((r) => (release = r)));
    await waitFor(() => s.freshness().stale, 'the cache to notice the drop');
    await other.deleteVolume('gone');
    await other.insertVolume(volume('new'));
    const { header } = await admin.kv.range({ key: Buffer.from(prefix) });
    await admin.kv.compact({ revision: header.revision, physical: true });
    release();
    // Meanwhile reads go to etcd (the copy is being read again): wait for the new copy itself.
    await waitFor(() => s.readCacheHealth()?.loads === 2 && s.freshness().state === 'live', 'the reload');
    expect((await s.listVolumes()).map((v) => v.name)).toEqual(['kept', 'new']);
    expect(s.readCacheHealth()).toMatchObject({ state: 'live', loads: 2, resumes: 0 });
    const warn = logged.find((l) => l.msg.includes('fell behind a compaction'));
    // Found before resuming (a read at the cache's revision fails), or by the watch etcd cancels.
    expect(warn?.details.reason).toMatch(
      new RegExp(`^etcd compacted its history (past revision ${before}|up to revision ${header.revision})$`),
    );
  });

  it('keeps answering reads from the copy, marked stale, while etcd hangs; writes fail fast', async () => {
    const s = await live(
      cached({ requestTimeoutMs: 500, readCache: { heartbeatMs: 100, staleAfterMs: 300 } }),
    );
    await s.insertVolume(volume('kept'));
    etcd.pause();
    try {
      await waitFor(() => s.freshness().stale, 'the cache to go stale');
      expect(s.freshness()).toMatchObject({ cached: true, stale: true, state: 'stale' });
      expect(s.freshness().reason).toMatch(/did not answer the watch for \d+ ms/);
      expect((await s.getVolumeState('kept')).volume?.name).toBe('kept');
      expect((await s.listVolumeSummaries('h')).map((v) => v.name)).toEqual(['kept']);
      const err = await failure(s.insertVolume(volume('later')));
      expect(err.code).toBe('UNAVAILABLE');
    } finally {
      etcd.resume();
    }
    await waitFor(() => s.freshness().state === 'live', 'the cache to be live again');
    await s.insertVolume(volume('after'));
    expect((await s.listVolumes()).map((v) => v.name)).toContain('after');
  });
});

describe('EtcdStore read cache across an etcd restart', () => {
  let own: EtcdService;
  beforeAll(async () => {
    own = await startEtcd();
  });
  afterAll(async () => {
    await own?.stop();
  });

  it('answers from the stale copy while etcd is down and follows both stores again after it restarts', async () => {
    const prefix = freshPrefix();
    const opts = { endpoints: [own.endpoint], prefix, requestTimeoutMs: 1000 };
    const a = await live(cached(opts));
    const b = await live(cached(opts));
    await a.insertVolume(volume('v1'));
    await waitFor(async () => (await b.listVolumes()).length === 1, 'v1 on b');
    await own.kill();
    await waitFor(() => a.freshness().stale && b.freshness().stale, 'both caches to go stale');
    expect((await b.getVolumeState('v1')).volume?.name).toBe('v1');
    expect((await failure(a.insertVolume(volume('v2')))).code).toBe('UNAVAILABLE');
    await own.restart();
    await waitFor(() => a.freshness().state === 'live' && b.freshness().state === 'live', 'both live again');
    await b.insertVolume(volume('v3'));
    await waitFor(async () => (await a.getVolumeState('v3')).volume !== undefined, 'v3 on a');
    expect(a.freshness().stale).toBe(false);
  });
});
