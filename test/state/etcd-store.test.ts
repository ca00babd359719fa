import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Etcd3 } from 'etcd3';
import { execa, type ResultPromise } from 'execa';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { pollUntil } from '../../src/base/backoff.js';
import { isStowageError, type StowageError } from '../../src/base/errors.js';
import { EtcdStore, type EtcdStoreOptions, parseEtcdUrl } from '../../src/state/etcd-store.js';
import { failure } from '../helpers/failure.js';
import { type EtcdService, startEtcd } from '../services/etcd.js';
import { storeContract, volume } from './store-contract.js';

/**
 * EtcdStore against a real etcd (test/services/etcd.ts). Every store gets a fresh key prefix, so
 * tests do not see each other's keys; the outage tests run their own etcd, which they stop.
 */

let etcd: EtcdService;
beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.stop();
});

const opened: EtcdStore[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
});

let seq = 0;
function freshPrefix(): string {
  return `/t-${randomBytes(4).toString('hex')}-${++seq}`;
}

function settings(over: Partial<EtcdStoreOptions> = {}): EtcdStoreOptions {
  return { endpoints: [etcd.endpoint], prefix: freshPrefix(), requestTimeoutMs: 5000, ...over };
}

function open(over: Partial<EtcdStoreOptions> = {}): EtcdStore {
  const s = new EtcdStore(settings(over));
  opened.push(s);
  return s;
}

/** Two independent clients (own connections) on the same keys, as two hosts would be. */
function twoClients(over: Partial<EtcdStoreOptions> = {}): [EtcdStore, EtcdStore] {
  const prefix = freshPrefix();
  return [open({ prefix, ...over }), open({ prefix, ...over })];
}

const now = () => new Date().toISOString();

storeContract(
  'etcd',
  async () => open(),
  async (s) => open({ prefix: (s as EtcdStore).prefix }),
);

describe('parseEtcdUrl', () => {
  it('reads the hosts, the ports and the key prefix', () => {
    expect(parseEtcdUrl('etcd://10.0.0.1:2379,etcd-2.example.com:32379/stowage')).toEqual({
      endpoints: ['http://10.0.0.1:2379', 'http://etcd-2.example.com:32379'],
      prefix: '/stowage',
      tls: false,
    });
    expect(parseEtcdUrl('etcds://a:2379/team/stowage/')).toEqual({
      endpoints: ['https://a:2379'],
      prefix: '/team/stowage',
      tls: true,
    });
  });

  it('defaults the port to 2379 and the prefix to /stowage, and takes IPv6 in brackets', () => {
    expect(parseEtcdUrl('etcd://db')).toEqual({
      endpoints: ['http://db:2379'],
      prefix: '/stowage',
      tls: false,
    });
    expect(parseEtcdUrl('ETCD://[::1]:2380,[fe80::1]/')).toEqual({
      endpoints: ['http://[::1]:2380', 'http://[fe80::1]:2379'],
      prefix: '/stowage',
      tls: false,
    });
  });

  it.each([
    ['', /it is empty/],
    ['localhost:2379', /expected etcd:\/\/host:port/],
    ['http://h:2379/stowage', /scheme must be etcd:\/\/ or etcds:\/\/ \(TLS\), not http:\/\//],
    ['etcd:///stowage', /no host given/],
    ['etcd://a,,b/stowage', /an empty host/],
    ['etcd://a,/stowage', /an empty host/],
    ['etcd://h:0/x', /port "0" is not a number from 1 to 65535/],
    ['etcd://h:65536/x', /port "65536"/],
    ['etcd://h:/x', /port ""/],
    ['etcd://h:2379x/x', /port "2379x"/],
    ['etcd://h_1:2379/x', /"h_1" is not a host name or address/],
    ['etcd://::1:2379/x', /write IPv6 addresses in brackets/],
    ['etcd://[::1/x', /unclosed "\["/],
    ['etcd://h/a//b', /may only have segments of/],
    ['etcd://h/a/../b', /may only have segments of/],
    ['etcd://h/a b', /may only have segments of/],
    ['etcd://h/x?timeout=5s', /query strings and fragments are not supported/],
  ])('refuses %j with CONFIG and says why', (url, why) => {
    let err: unknown;
    try {
      parseEtcdUrl(url);
    } catch (e) {
      err = e;
    }
    expect(isStowageError(err, 'CONFIG')).toBe(true);
    expect((err as Error).message).toMatch(why);
    expect((err as Error).message).toContain('example: etcd://');
  });

  it('refuses credentials in the URL without repeating them', () => {
    let err: unknown;
    try {
      parseEtcdUrl('etcd://root:s3cret-pw@h:2379/stowage');
    } catch (e) {
      err = e;
    }
    expect(isStowageError(err, 'CONFIG')).toBe(true);
    expect((err as Error).message).toMatch(/credentials do not belong in the URL/);
    expect((err as Error).message).not.toContain('s3cret-pw');
  });
});

describe('EtcdStore settings', () => {
  const base: EtcdStoreOptions = {
    endpoints: ['http://127.0.0.1:2379'],
    prefix: '/s',
    requestTimeoutMs: 1000,
  };

  it.each<[string, Partial<EtcdStoreOptions>, RegExp]>([
    ['no endpoints', { endpoints: [] }, /no endpoints given/],
    ['an endpoint without scheme', { endpoints: ['127.0.0.1:2379'] }, /is not http\(s\):\/\/host:port/],
    ['mixed schemes', { endpoints: ['http://a:1', 'https://b:1'] }, /mix http:\/\/ and https:\/\//],
    ['TLS files for http', { tls: { ca: '/x/ca.pem' } }, /use etcds:\/\//],
    ['a zero timeout', { requestTimeoutMs: 0 }, /requestTimeoutMs must be a positive number/],
    ['an empty prefix', { prefix: '/' }, /the key prefix is empty/],
    [
      'a half client certificate',
      { endpoints: ['https://a:1'], tls: { cert: '/x/c.pem' } },
      /both cert and key/,
    ],
    [
      'an unreadable CA file',
      { endpoints: ['https://a:1'], tls: { ca: '/nonexistent/ca.pem' } },
      /\/nonexistent\/ca.pem/,
    ],
  ])('refuses %s with CONFIG', (_what, over, why) => {
    expect(() => new EtcdStore({ ...base, ...over })).toThrow(why);
    try {
      new EtcdStore({ ...base, ...over });
    } catch (e) {
      expect(isStowageError(e, 'CONFIG')).toBe(true);
    }
  });

  it('works from a parsed URL and never shows the password when logged', async () => {
    const { endpoints, prefix } = parseEtcdUrl(`${etcd.url}${freshPrefix()}`);
    const s = new EtcdStore({
      endpoints,
      prefix,
      requestTimeoutMs: 5000,
      auth: { username: 'u', password: 'pw-123' },
    });
    expect(JSON.stringify(s)).not.toContain('pw-123');
    expect(JSON.stringify(s)).toContain(etcd.endpoint);
    await s.close();
    const plain = open({ endpoints, prefix });
    await plain.insertVolume(volume('from-url'));
    expect((await plain.getVolume('from-url'))?.name).toBe('from-url');
  });
});

describe('EtcdStore on a real etcd', () => {
  it('keeps stores with different prefixes apart', async () => {
    const a = open();
    const b = open();
    await a.insertVolume(volume('same'));
    await b.insertVolume(volume('same', { driver: 'nfs' }));
    expect((await a.listVolumes()).map((v) => v.driver)).toEqual(['local']);
    expect((await b.listVolumes()).map((v) => v.driver)).toEqual(['nfs']);
  });

  it('lets exactly one of two clients create a volume of a given name', async () => {
    const [a, b] = twoClients();
    const names = Array.from({ length: 20 }, (_, i) => `race-${i}`);
    const outcomes = await Promise.all(
      names.map(async (name) => {
        const [ra, rb] = await Promise.allSettled([
          a.insertVolume(volume(name, { driver: 'local' })),
          b.insertVolume(volume(name, { driver: 'nfs' })),
        ]);
        return { name, ra, rb };
      }),
    );
    for (const { name, ra, rb } of outcomes) {
      const won = [ra, rb].filter((r) => r.status === 'fulfilled');
      expect(won, name).toHaveLength(1);
      const lost = [ra, rb].find((r) => r.status === 'rejected') as PromiseRejectedResult;
      expect(isStowageError(lost.reason, 'CONFLICT'), String(lost.reason)).toBe(true);
      const stored = await a.getVolume(name);
      expect(stored?.driver).toBe(ra.status === 'fulfilled' ? 'local' : 'nfs');
    }
  });

  it('loses no update when two clients patch different fields of a volume at once', async () => {
    const [a, b] = twoClients();
    const names = Array.from({ length: 10 }, (_, i) => `upd-${i}`);
    await Promise.all(names.map((n) => a.insertVolume(volume(n))));
    await Promise.all(
      names.flatMap((n) => [
        a.updateVolume(n, { status: 'removing' }),
        b.updateVolume(n, { fields: { patched: n } }),
        a.updateVolume(n, { adopted: true }),
        b.updateVolume(n, { removePolicy: 'archive' }),
      ]),
    );
    for (const n of names) {
      expect(await b.getVolume(n)).toEqual(
        volume(n, { status: 'removing', fields: { patched: n }, adopted: true, removePolicy: 'archive' }),
      );
    }
  });

  it('gives a contended lock to exactly one of two clients, also when taking over an expired one', async () => {
    const [a, b] = twoClients();
    const keys = Array.from({ length: 20 }, (_, i) => `volume/lock-${i}`);
    // Half of the keys start with an expired holder that both clients try to replace.
    await Promise.all(keys.filter((_, i) => i % 2 === 0).map((k) => a.tryLock(k, 'dead', 1)));
    await sleep(5);
    const results = await Promise.all(
      keys.map(async (k) => {
        const [ra, rb] = await Promise.all([
          a.tryLock(k, 'owner-a', 60_000),
          b.tryLock(k, 'owner-b', 60_000),
        ]);
        return { k, ra, rb };
      }),
    );
    for (const { k, ra, rb } of results) {
      expect([ra.acquired, rb.acquired].filter(Boolean), k).toHaveLength(1);
      const loser = ra.acquired ? rb : ra;
      expect(loser.holder?.owner).toBe(ra.acquired ? 'owner-a' : 'owner-b');
      expect(loser.holder?.expiresAt).toBeGreaterThan(Date.now());
    }
  });

  it('serialises a read-modify-write through the lock across two clients', async () => {
    const [a, b] = twoClients();
    await a.insertVolume(volume('counter', { fields: { n: 0 } }));
    const worker = async (s: EtcdStore, owner: string) => {
      for (let i = 0; i < 10; i++) {
        await pollUntil(
          async () => ((await s.tryLock('volume/counter', owner, 30_000)).acquired ? true : undefined),
          {
            timeoutMs: 20_000,
            initialDelayMs: 1,
            maxDelayMs: 20,
            what: 'the counter lock',
          },
        );
        const n = (await s.getVolume('counter'))!.fields.n as number;
        await s.putMount({
          volume: 'counter',
          host: owner,
          mountpoint: '/m',
          refs: {},
          state: 'mounted',
          updatedAt: now(),
        });
        await s.updateVolume('counter', { fields: { n: n + 1 } });
        await s.unlock('volume/counter', owner);
      }
    };
    await Promise.all([worker(a, 'a'), worker(b, 'b')]);
    expect((await a.getVolume('counter'))?.fields).toEqual({ n: 20 });
  });

  it('unlocks and breaks a lock only for the owner that still holds it', async () => {
    const [a, b] = twoClients();
    expect((await a.tryLock('volume/x', 'o1', 60_000)).acquired).toBe(true);
    await b.breakLock('volume/x', 'o0');
    await b.unlock('volume/x', 'o0');
    expect((await b.tryLock('volume/x', 'o2', 60_000)).holder?.owner).toBe('o1');
    await a.unlock('volume/x', 'o1');
    expect((await b.tryLock('volume/x', 'o2', 1)).acquired).toBe(true);
    await sleep(5);
    expect((await a.tryLock('volume/x', 'o3', 60_000)).acquired).toBe(true); // o2 expired
    await b.breakLock('volume/x', 'o2'); // o2 no longer holds it: o3 keeps it
    expect((await b.tryLock('volume/x', 'o4', 60_000)).holder?.owner).toBe('o3');
  });

  it('hands out unique intent ids to clients on different hosts', async () => {
    const [a, b] = twoClients();
    const ids = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        (i % 2 ? a : b).beginIntent({
          volume: `v${i}`,
          host: i % 2 ? 'ha' : 'hb',
          op: 'mount',
          details: { i },
        }),
      ),
    );
    expect(new Set(ids).size).toBe(30);
    const onA = await b.listIntents('ha');
    expect(onA.map((i) => i.id)).toEqual(ids.filter((_, i) => i % 2).sort((x, y) => x - y));
    expect(onA.every((i) => i.host === 'ha' && i.op === 'mount')).toBe(true);
    await a.endIntent(0); // no such id: ends nothing (etcd would read 0 as "any revision")
    await a.endIntent(ids[0]!); // an intent of host hb, ended through the other client
    await a.endIntent(ids[0]!);
    expect((await b.listIntents('hb')).map((i) => i.id)).not.toContain(ids[0]);
    expect(await b.listIntents('hb')).toHaveLength(14);
    expect(await b.listIntents('ha')).toHaveLength(15);
  });

  it('lists more volumes than fit in a default 4 MiB grpc message', async () => {
    const s = open();
    const blob = 'x'.repeat(2500);
    const names = Array.from({ length: 2000 }, (_, i) => `big-${String(i).padStart(4, '0')}`);
    for (let i = 0; i < names.length; i += 100) {
      await Promise.all(names.slice(i, i + 100).map((n) => s.insertVolume(volume(n, { fields: { blob } }))));
    }
    const all = await s.listVolumes();
    expect(all.map((v) => v.name)).toEqual(names);
    expect((await s.listVolumeSummaries('h')).length).toBe(2000);
  });

  it('refuses calls after close(), which may be called twice', async () => {
    const s = open();
    await s.close();
    await s.close();
    const err = await failure(s.getVolume('v'));
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toBe('get volume v: the etcd store was already closed');
  });

  it('checks the connection within the dial timeout on connect()', async () => {
    const s = await EtcdStore.connect(settings({ dialTimeoutMs: 5000 }));
    opened.push(s);
    expect(await s.listVolumes()).toEqual([]);
  });
});

describe('EtcdStore host leases', () => {
  const host = (id: string) => ({ id, identity: { az: 'a' }, lastSeen: now() });

  it('shows a registered host as live, and as gone but still listed once its lease runs out', async () => {
    const [daemon, observer] = twoClients();
    await daemon.registerHost(host('h1'), 1);
    await observer.upsertHost(host('h2')); // recorded, never registered: not live
    expect(await observer.listLiveHostIds()).toEqual(new Set(['h1']));
    expect((await observer.listHostStatus()).map((h) => [h.id, h.live])).toEqual([
      ['h1', true],
      ['h2', false],
    ]);
    await daemon.close({ revokeLeases: false }); // keepalive stops; etcd expires the lease itself
    await waitFor(async () => !(await observer.listLiveHostIds()).has('h1'), 'the lease of h1 to expire');
    expect((await observer.listHosts()).map((h) => h.id)).toEqual(['h1', 'h2']);
    expect((await observer.listHostStatus()).find((h) => h.id === 'h1')?.live).toBe(false);
  });

  it('keeps a host live across TTLs while the store is open, and revokes it on close()', async () => {
    const [daemon, observer] = twoClients();
    await daemon.registerHost(host('steady'), 2);
    for (let i = 0; i < 8; i++) {
      await sleep(500); // 4 s in all: two TTLs, six keepalives
      expect((await observer.listLiveHostIds()).has('steady')).toBe(true);
    }
    await daemon.registerHost(host('steady'), 2); // again: replaces the lease, stays live
    expect((await observer.listLiveHostIds()).has('steady')).toBe(true);
    await daemon.close();
    expect((await observer.listLiveHostIds()).has('steady')).toBe(false); // revoked, at once
    expect((await observer.listHosts()).map((h) => h.id)).toEqual(['steady']);
  });

  it('shows the host of a killed process as gone, keeping its record', async () => {
    const observer = open();
    const child = hostProcess(observer.prefix, 'victim', 'hold');
    try {
      await waitForLine(child, 'registered');
      expect((await observer.listLiveHostIds()).has('victim')).toBe(true);
      child.kill('SIGKILL');
      await child.catch(() => undefined);
      await waitFor(
        async () => !(await observer.listLiveHostIds()).has('victim'),
        'the lease of the killed host',
      );
      expect((await observer.listHosts()).map((h) => h.id)).toEqual(['victim']);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('lets the process exit by itself after close()', async () => {
    const observer = open();
    const child = hostProcess(observer.prefix, 'leaver', 'close');
    const res = await child;
    expect(res.stdout).toBe('registered\nclosed');
    expect((await observer.listLiveHostIds()).has('leaver')).toBe(false);
  });

  it('refuses a TTL that is not a whole number of seconds', async () => {
    const s = open();
    expect((await failure(s.registerHost(host('h'), 0.5))).code).toBe('INVALID_ARGUMENT');
  });
});

describe('EtcdStore with etcd auth', () => {
  let secured: EtcdService;
  beforeAll(async () => {
    secured = await startEtcd();
    const admin = new Etcd3({ hosts: [secured.endpoint] });
    try {
      await admin.role('root').create();
      await admin.user('root').create('root-pw-1');
      await admin.user('root').addRole('root');
      await admin.auth.authEnable();
    } finally {
      admin.close();
    }
  });
  afterAll(async () => {
    await secured?.stop();
  });

  it('works with the right password and says CONFIG, without the password, for a wrong one', async () => {
    const good = open({ endpoints: [secured.endpoint], auth: { username: 'root', password: 'root-pw-1' } });
    await good.insertVolume(volume('authed'));
    expect((await good.getVolume('authed'))?.name).toBe('authed');

    const bad = open({ endpoints: [secured.endpoint], auth: { username: 'root', password: 'wrong-pw-2' } });
    const err = await failure(bad.getVolume('authed'));
    expect(err.code).toBe('CONFIG');
    expect(err.message).toMatch(/refused to authenticate as user "root"/);
    expect(err.message).not.toContain('wrong-pw-2');

    const anonymous = open({ endpoints: [secured.endpoint] });
    const err2 = await failure(anonymous.getVolume('authed'));
    expect(err2.code).toBe('CONFIG');
    expect(err2.message).toContain(`etcd at ${secured.endpoint} requires a user and password`);
  });
});

describe('EtcdStore during an etcd outage', () => {
  const TIMEOUT = 500;
  /** Generous: the bound is "about requestTimeoutMs", not "hangs" or "retries for a while". */
  const FAST = TIMEOUT + 2500;
  let flaky: EtcdService;
  beforeAll(async () => {
    flaky = await startEtcd();
  });
  afterAll(async () => {
    await flaky?.stop();
  });
  afterEach(() => {
    flaky.resume(); // a failed test must not leave etcd stopped for the next one
  });

  const outageStore = (over: Partial<EtcdStoreOptions> = {}) =>
    open({ endpoints: [flaky.endpoint], requestTimeoutMs: TIMEOUT, ...over });

  /** Every method of the store, each as one call. */
  const everyMethod = (s: EtcdStore): Array<[string, () => Promise<unknown>]> => [
    ['getVolume', () => s.getVolume('v')],
    ['getVolumeState', () => s.getVolumeState('v')],
    ['listVolumes', () => s.listVolumes()],
    ['listVolumeSummaries', () => s.listVolumeSummaries('h')],
    ['insertVolume', () => s.insertVolume(volume('new'))],
    ['updateVolume', () => s.updateVolume('v', { status: 'removing' })],
    ['deleteVolume', () => s.deleteVolume('v')],
    ['getAttachments', () => s.getAttachments('v')],
    ['listAttachmentsByHost', () => s.listAttachmentsByHost('h')],
    [
      'putAttachment',
      () =>
        s.putAttachment({ volume: 'v', host: 'h', device: '/dev/x', state: 'attached', updatedAt: now() }),
    ],
    ['deleteAttachment', () => s.deleteAttachment('v', 'h')],
    ['getMounts', () => s.getMounts('v')],
    ['listMountsByHost', () => s.listMountsByHost('h')],
    [
      'putMount',
      () =>
        s.putMount({
          volume: 'v',
          host: 'h',
          mountpoint: '/m',
          refs: { a: 1 },
          state: 'mounted',
          updatedAt: now(),
        }),
    ],
    ['deleteMount', () => s.deleteMount('v', 'h')],
    ['upsertHost', () => s.upsertHost({ id: 'h', identity: {}, lastSeen: now() })],
    ['listHosts', () => s.listHosts()],
    ['registerHost', () => s.registerHost({ id: 'h', identity: {}, lastSeen: now() }, 5)],
    ['listLiveHostIds', () => s.listLiveHostIds()],
    ['listHostStatus', () => s.listHostStatus()],
    ['beginIntent', () => s.beginIntent({ volume: 'v', host: 'h', op: 'mount', details: {} })],
    ['endIntent', () => s.endIntent(1)],
    ['listIntents', () => s.listIntents('h')],
    ['tryLock', () => s.tryLock('volume/v', 'o', 1000)],
    ['unlock', () => s.unlock('volume/v', 'o')],
    ['breakLock', () => s.breakLock('volume/v', 'o')],
    ['ping', () => s.ping()],
  ];

  async function expectUnavailableFast(what: string, call: () => Promise<unknown>): Promise<void> {
    const started = Date.now();
    const err = await failure(within(call(), FAST * 3, what));
    const took = Date.now() - started;
    expect(err.code, `${what}: ${err.message}`).toBe('UNAVAILABLE');
    expect(err.message, what).toContain(`the metadata store etcd at ${flaky.endpoint}`);
    expect(err.message, what).toContain('check that etcd is running and reachable');
    expect(took, `${what} took ${took} ms`).toBeLessThan(FAST);
  }

  it('fails every method fast with UNAVAILABLE while etcd hangs, and works again when it resumes', async () => {
    const s = outageStore();
    await s.insertVolume(volume('v'));
    flaky.pause();
    await Promise.all(everyMethod(s).map(([what, call]) => expectUnavailableFast(what, call)));
    const err = await failure(s.getVolume('v'));
    expect(err.message).toContain(`did not answer within ${TIMEOUT} ms`);
    flaky.resume();
    // Not getVolume('v'): the writes that timed out (deleteVolume('v') among them) may still be
    // applied by etcd once it runs again. A timed-out write has an unknown outcome.
    await waitFor(
      () =>
        s.ping().then(
          () => true,
          () => false,
        ),
      'the store to recover',
    );
    await s.insertVolume(volume('after-pause'));
    expect((await s.getVolume('after-pause'))?.name).toBe('after-pause');
  });

  it('fails every method fast while etcd is down, and the same store works again after a restart', async () => {
    const s = outageStore();
    await s.insertVolume(volume('kept'));
    await flaky.kill();
    await Promise.all(everyMethod(s).map(([what, call]) => expectUnavailableFast(what, call)));
    await flaky.restart();
    await waitFor(
      async () => (await s.getVolume('kept').catch(() => undefined))?.name === 'kept',
      'the store to recover',
    );
    await s.insertVolume(volume('after'));
    expect((await s.listVolumes()).map((v) => v.name)).toEqual(['after', 'kept']);
  });

  it('connect() fails fast with UNAVAILABLE when etcd does not answer', async () => {
    flaky.pause();
    const started = Date.now();
    const err = await failure(
      EtcdStore.connect(
        settings({ endpoints: [flaky.endpoint], requestTimeoutMs: 60_000, dialTimeoutMs: TIMEOUT }),
      ),
    );
    expect(err.code).toBe('UNAVAILABLE');
    expect(Date.now() - started).toBeLessThan(FAST);
  });

  it('uses the endpoints that answer when another one is down', async () => {
    const dead = `http://127.0.0.1:${await closedPort()}`;
    const s = outageStore({ endpoints: [dead, flaky.endpoint], requestTimeoutMs: 5000 });
    for (let i = 0; i < 20; i++) {
      await s.putMount({
        volume: `m${i}`,
        host: 'h',
        mountpoint: '/m',
        refs: { a: 1 },
        state: 'mounted',
        updatedAt: now(),
      });
      expect((await s.tryLock(`volume/m${i}`, 'o', 60_000)).acquired).toBe(true);
    }
    expect(await s.listMountsByHost('h')).toHaveLength(20);
  });

  it('registers the host again after etcd was down for longer than its TTL', async () => {
    const prefix = freshPrefix();
    const daemon = outageStore({ prefix, requestTimeoutMs: 2000 });
    const observer = outageStore({ prefix, requestTimeoutMs: 2000 });
    const reported: StowageError[] = [];
    await daemon.registerHost({ id: 'survivor', identity: {}, lastSeen: now() }, 1, {
      onBackgroundError: (e) => reported.push(e),
    });
    await flaky.kill();
    await sleep(3000); // > 2 TTLs: etcd3's Lease gives the lease up as lost
    await flaky.restart();
    const liveNow = async () =>
      (await observer.listLiveHostIds().catch(() => new Set<string>())).has('survivor');
    await waitFor(liveNow, 'the host to be live again');
    // Still live several TTLs later: a new lease is being kept alive, not a leftover of the old one.
    for (let i = 0; i < 6; i++) {
      await sleep(500);
      expect(await liveNow()).toBe(true);
    }
    for (const e of reported) {
      expect(e.code).toBe('UNAVAILABLE');
      expect(e.message).toMatch(/^keep host survivor registered: the metadata store etcd at/);
    }
  });
});

/** Rejects with a plain Error (not a StowageError) if `p` does not settle within `ms`. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  await pollUntil(async () => ((await check()) ? true : undefined), {
    timeoutMs,
    initialDelayMs: 50,
    maxDelayMs: 250,
    what,
  });
}

function hostProcess(prefix: string, hostId: string, mode: 'hold' | 'close'): ResultPromise {
  const fixture = join(import.meta.dirname, 'fixtures', 'etcd-host.ts');
  return execa('node', ['--no-warnings', '--import', 'tsx', fixture, etcd.endpoint, prefix, hostId, mode], {
    timeout: 60_000,
  });
}

async function waitForLine(child: ResultPromise, line: string, timeoutMs = 30_000): Promise<void> {
  let out = '';
  await within(
    new Promise<void>((resolve, reject) => {
      child.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.split('\n').includes(line)) resolve();
      });
      child.catch((err: unknown) =>
        reject(new Error(`the child exited before printing ${line}: ${String(err)}`)),
      );
    }),
    timeoutMs,
    `the child's "${line}"`,
  );
}

/** A loopback port that nothing listens on (taken from the kernel, then released). */
async function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0));
    });
  });
}
