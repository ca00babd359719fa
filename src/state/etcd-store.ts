import { randomBytes } from 'node:crypto';
import type { IRequestOp } from 'etcd3';
import { StowageError } from '../base/errors.js';
import { EtcdBulk, type StoreSnapshot } from './etcd-bulk.js';
import { EtcdReadCache, type ReadCacheHealth } from './etcd-cache.js';
import { EtcdConnection, type EtcdStoreOptions } from './etcd-client.js';
import { EtcdHosts, type HostStatus } from './etcd-hosts.js';
import { delOp, EtcdKv, parse, putOp, rangeOp, values } from './etcd-kv.js';
import { ReadPath } from './etcd-read-path.js';
import { EtcdRequestTallies } from './etcd-requests.js';
import type {
  AttachmentRecord,
  CloseOptions,
  HostRecord,
  IntentRecord,
  LockHolder,
  MountRecord,
  RequestSample,
  RequestTally,
  StateStore,
  StoreFreshness,
  VolumeRecord,
  VolumeState,
  VolumeSummary,
} from './store.js';

export type { ReadCacheHealth } from './etcd-cache.js';
export type { EtcdStoreOptions } from './etcd-client.js';
export type { HostStatus } from './etcd-hosts.js';
export { type EtcdUrl, parseEtcdUrl } from './etcd-url.js';

type VolumePatch = Partial<Pick<VolumeRecord, 'status' | 'fields' | 'adopted' | 'removePolicy'>>;

/**
 * The multi-host backend: etcd v3 through etcd3. Layout under the prefix (segments are
 * URI-encoded; values are the records as JSON):
 *
 *   volumes/<name>                 VolumeRecord
 *   mounts/<volume>/<host>         MountRecord
 *   attachments/<volume>/<host>    AttachmentRecord
 *   hosts/<id>                     HostRecord (no lease: a gone host stays listed)
 *   alive/<id>                     lease-bound liveness marker (registerHost)
 *   intents/<host>/<random>        IntentRecord without its id: the id is the key's create revision
 *   locks/<key>                    LockHolder
 *   requests/<host>/<door>/…       RequestTally (etcd-requests.ts)
 *
 * Consistency: every read-modify-write is a txn that compares the key's mod revision with the one
 * read (0 = absent), retried on a lost race with the fresh value that the failed txn returns; so
 * no update is lost and create-if-absent is exact. Multi-key reads (getVolumeState, summaries)
 * are one txn of several ranges: one revision. Lock expiry, like SQLite's, compares expiresAt
 * with this host's clock, so hosts should keep their clocks in sync (NTP).
 *
 * Read cache (opts.readCache; the daemon's): getVolumeState (Get, Path), listVolumes and
 * listVolumeSummaries (List) are answered from a watch-fed copy (etcd-cache.ts, etcd-read-path.ts):
 * this process reads its own writes at once, other hosts' changes appear within the watch's lag,
 * and while etcd is unreachable those reads answer from the copy, marked stale in freshness().
 * So are the by-host lists (listMountsByHost, listAttachmentsByHost: the copy keeps mounts and
 * attachments indexed by host as well as by volume, so a host's own cost no scan of everyone's).
 * Every other read (getVolume, getMounts, getAttachments, intents, locks, hosts) goes to etcd:
 * those are what the core decides from, under the volume's lock.
 *
 * Failure: every method is bounded by requestTimeoutMs as a whole and fails with UNAVAILABLE
 * naming the endpoints; the client's own retries and circuit breaker are set so that they neither
 * hide nor prolong an outage (see etcd-client.ts). As with any remote store, a write that timed
 * out has an unknown outcome: etcd may still apply it once it runs again.
 */
export class EtcdStore implements StateStore {
  readonly kind = 'etcd';
  readonly prefix: string;
  private readonly conn: EtcdConnection;
  private readonly kv: EtcdKv;
  private readonly hosts: EtcdHosts;
  private readonly requests: EtcdRequestTallies;
  private readonly cache: EtcdReadCache | undefined;
  private readonly reads: ReadPath;
  private closed = false;

  constructor(private readonly opts: EtcdStoreOptions) {
    const prefix = typeof opts.prefix === 'string' ? opts.prefix.replace(/\/+$/, '') : '';
    if (prefix === '') {
      throw new StowageError(
        'CONFIG',
        'invalid etcd store settings: the key prefix is empty (use e.g. /stowage)',
      );
    }
    this.prefix = prefix;
    this.conn = new EtcdConnection(opts);
    this.kv = new EtcdKv(this.conn.client);
    this.hosts = new EtcdHosts(this.conn, this.kv, (...segments) => this.k(...segments));
    this.requests = new EtcdRequestTallies(this.kv, (...segments) => this.k(...segments));
    if (opts.readCache) {
      const { heartbeatMs, staleAfterMs, log } = opts.readCache;
      this.cache = new EtcdReadCache(this.conn.client, prefix, {
        requestTimeoutMs: opts.requestTimeoutMs,
        detached: (fn) => this.conn.detached(fn),
        ...(heartbeatMs !== undefined ? { heartbeatMs } : {}),
        ...(staleAfterMs !== undefined ? { staleAfterMs } : {}),
        ...(log ? { log } : {}),
      });
    }
    this.reads = new ReadPath(this.cache, opts.requestTimeoutMs);
  }

  freshness(): StoreFreshness {
    if (!this.cache) return { cached: false, stale: false };
    const h = this.cache.health();
    const f: StoreFreshness = {
      cached: true,
      stale: h.state === 'stale',
      state: h.state,
      revision: h.revision,
      since: h.since,
    };
    if (h.reason !== undefined) f.reason = h.reason;
    return f;
  }

  /** The read cache's own figures (loads, resumes, volumes held); undefined without one. */
  readCacheHealth(): ReadCacheHealth | undefined {
    return this.cache?.health();
  }

  /** Resolves true once the read cache is live (false after `timeoutMs`); true without a cache. */
  async readCacheLive(timeoutMs = this.opts.requestTimeoutMs): Promise<boolean> {
    return this.cache ? this.cache.whenLive(timeoutMs) : true;
  }

  /** Test seam: breaks the read cache's watch as a dropped connection would (see EtcdReadCache.dropWatch). */
  dropReadCacheWatch(hold?: Promise<unknown>): void {
    this.cache?.dropWatch(hold);
  }

  /**
   * Opens a store and checks within dialTimeoutMs (default requestTimeoutMs) that etcd answers,
   * like etcd clientv3's DialTimeout; the constructor alone does not touch the network.
   */
  static async connect(opts: EtcdStoreOptions): Promise<EtcdStore> {
    const store = new EtcdStore(opts);
    try {
      await store.ping(opts.dialTimeoutMs ?? opts.requestTimeoutMs);
      return store;
    } catch (err) {
      await store.close();
      throw err;
    }
  }

  /** One cheap read; UNAVAILABLE when etcd does not answer within `timeoutMs`. */
  async ping(timeoutMs = this.opts.requestTimeoutMs): Promise<void> {
    await this.run(
      'connect',
      () => this.conn.client.kv.range({ key: Buffer.from(this.prefix), count_only: true }),
      timeoutMs,
    );
  }

  /** Safe to log: no credentials. */
  toJSON(): Record<string, unknown> {
    return { kind: this.kind, endpoints: this.conn.endpoints, prefix: this.prefix };
  }

  // ---- keys ----

  private k(...segments: string[]): string {
    return [this.prefix, ...segments.map((s, i) => (i === 0 ? s : encodeURIComponent(s)))].join('/');
  }
  private volumeKey = (name: string) => this.k('volumes', name);
  private mountKey = (volume: string, host: string) => this.k('mounts', volume, host);
  private attachmentKey = (volume: string, host: string) => this.k('attachments', volume, host);
  private lockKey = (lock: string) => this.k('locks', lock);

  // ---- volumes ----

  async getVolume(name: string): Promise<VolumeRecord | undefined> {
    return this.run(`get volume ${name}`, async () => {
      const kv = await this.kv.get(this.volumeKey(name));
      return kv ? parse<VolumeRecord>(kv.value) : undefined;
    });
  }

  async getVolumeState(name: string): Promise<VolumeState> {
    this.assertOpen(`get volume ${name}`);
    return this.reads.read(
      (t) => t.volumeState(name),
      () => this.readVolumeState(name),
    );
  }

  private readVolumeState(name: string): Promise<VolumeState> {
    return this.run(`get volume ${name}`, async () => {
      const [vol, mounts, attachments] = await this.kv.readMany(
        rangeOp(this.volumeKey(name)),
        rangeOp(`${this.k('mounts', name)}/`, { prefix: true }),
        rangeOp(`${this.k('attachments', name)}/`, { prefix: true }),
      );
      const state: VolumeState = {
        mounts: values<MountRecord>(mounts).sort(byHost),
        attachments: values<AttachmentRecord>(attachments).sort(byHost),
      };
      const v = values<VolumeRecord>(vol)[0];
      if (v) state.volume = v;
      return state;
    });
  }

  async listVolumes(filter: { driver?: string } = {}): Promise<VolumeRecord[]> {
    this.assertOpen('list volumes');
    return this.reads.read(
      (t) => t.listVolumes(filter),
      () => this.readVolumes(filter),
    );
  }

  private readVolumes(filter: { driver?: string }): Promise<VolumeRecord[]> {
    return this.run('list volumes', async () => {
      const vols = await this.kv.list<VolumeRecord>(`${this.k('volumes')}/`);
      return vols.filter((v) => !filter.driver || v.driver === filter.driver).sort(byName);
    });
  }

  /** From the read cache: the same (frozen) array until a volume or mount changes. */
  async listVolumeSummaries(host: string, filter: { driver?: string } = {}): Promise<VolumeSummary[]> {
    this.assertOpen('list volumes');
    return this.reads.read(
      (t) => t.listSummaries(host, filter),
      () => this.readSummaries(host, filter),
    );
  }

  private readSummaries(host: string, filter: { driver?: string }): Promise<VolumeSummary[]> {
    return this.run('list volumes', async () => {
      const [vols, mounts] = await this.kv.readMany(
        rangeOp(`${this.k('volumes')}/`, { prefix: true }),
        rangeOp(`${this.k('mounts')}/`, { prefix: true }),
      );
      const here = new Map<string, string>();
      for (const m of values<MountRecord>(mounts)) {
        if (m.host === host && m.state === 'mounted') here.set(m.volume, m.mountpoint);
      }
      return values<VolumeRecord>(vols)
        .filter((v) => !filter.driver || v.driver === filter.driver)
        .sort(byName)
        .map((v) => {
          const s: VolumeSummary = { name: v.name, driver: v.driver, createdAt: v.createdAt };
          const mountpoint = here.get(v.name);
          if (mountpoint) s.mountpoint = mountpoint;
          return s;
        });
    });
  }

  async insertVolume(volume: VolumeRecord): Promise<void> {
    const k = this.volumeKey(volume.name);
    let at = 0;
    await this.run(`create volume ${volume.name}`, () =>
      this.kv.cas(
        k,
        null,
        (cur) => {
          if (cur) throw new StowageError('CONFLICT', `volume ${volume.name} already exists`);
          return { ops: [putOp(k, volume)], result: undefined };
        },
        (rev) => (at = rev),
      ),
    );
    await this.reads.wrote(at);
  }

  async updateVolume(name: string, patch: VolumePatch): Promise<void> {
    const set = Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) as VolumePatch;
    if (Object.keys(set).length === 0) return;
    const k = this.volumeKey(name);
    let at = 0;
    await this.run(`update volume ${name}`, async () =>
      this.kv.cas(
        k,
        await this.kv.get(k),
        (cur) => {
          if (!cur) throw new StowageError('NOT_FOUND', `volume ${name} does not exist`);
          return { ops: [putOp(k, { ...parse<VolumeRecord>(cur.value), ...set })], result: undefined };
        },
        (rev) => (at = rev),
      ),
    );
    await this.reads.wrote(at);
  }

  async deleteVolume(name: string): Promise<void> {
    await this.written(`delete volume ${name}`, delOp(this.volumeKey(name)));
  }

  // ---- attachments and mounts ----

  async getAttachments(volume: string): Promise<AttachmentRecord[]> {
    return this.run(`get attachments of ${volume}`, async () =>
      (await this.kv.list<AttachmentRecord>(`${this.k('attachments', volume)}/`)).sort(byHost),
    );
  }

  /**
   * With the read cache: from its host index (no etcd request, nothing of other hosts read).
   * Only `host` itself (its daemon and executables) writes its records while it is alive, so a
   * copy at most the watch's lag behind is as good as a direct read made that much earlier; the
   * core decides under the volume's lock from getMounts/getAttachments, which read etcd.
   * Without it: scans all attachments (one per volume in use).
   */
  async listAttachmentsByHost(host: string): Promise<AttachmentRecord[]> {
    this.assertOpen(`list attachments on ${host}`);
    return this.reads.read(
      (t) => t.attachmentsOn(host),
      () => this.scanAttachmentsOn(host),
    );
  }

  private scanAttachmentsOn(host: string): Promise<AttachmentRecord[]> {
    return this.run(`list attachments on ${host}`, async () =>
      (await this.kv.list<AttachmentRecord>(`${this.k('attachments')}/`))
        .filter((a) => a.host === host)
        .sort(byVolume),
    );
  }

  async putAttachment(a: AttachmentRecord): Promise<void> {
    await this.written(`record attachment of ${a.volume}`, putOp(this.attachmentKey(a.volume, a.host), a));
  }

  async deleteAttachment(volume: string, host: string): Promise<void> {
    await this.written(`delete attachment of ${volume}`, delOp(this.attachmentKey(volume, host)));
  }

  async getMounts(volume: string): Promise<MountRecord[]> {
    return this.run(`get mounts of ${volume}`, async () =>
      (await this.kv.list<MountRecord>(`${this.k('mounts', volume)}/`)).sort(byHost),
    );
  }

  /** As listAttachmentsByHost: from the read cache's host index when there is one. */
  async listMountsByHost(host: string): Promise<MountRecord[]> {
    this.assertOpen(`list mounts on ${host}`);
    return this.reads.read(
      (t) => t.mountsOn(host),
      () => this.scanMountsOn(host),
    );
  }

  private scanMountsOn(host: string): Promise<MountRecord[]> {
    return this.run(`list mounts on ${host}`, async () =>
      (await this.kv.list<MountRecord>(`${this.k('mounts')}/`)).filter((m) => m.host === host).sort(byVolume),
    );
  }

  async putMount(m: MountRecord): Promise<void> {
    await this.written(`record mount of ${m.volume}`, putOp(this.mountKey(m.volume, m.host), m));
  }

  async deleteMount(volume: string, host: string): Promise<void> {
    await this.written(`delete mount of ${volume}`, delOp(this.mountKey(volume, host)));
  }

  // ---- hosts ----

  async upsertHost(h: HostRecord): Promise<void> {
    await this.run(`record host ${h.id}`, () => this.kv.write(putOp(this.k('hosts', h.id), h)));
  }

  async listHosts(): Promise<HostRecord[]> {
    return this.run('list hosts', async () =>
      (await this.kv.list<HostRecord>(`${this.k('hosts')}/`)).sort(byId),
    );
  }

  /**
   * Records the host (as upsertHost) and marks it live for as long as this store keeps a lease of
   * `ttlSeconds` alive: in the background, re-granted after an outage, until close(). A host whose
   * process dies or loses etcd for longer than the TTL shows as gone (live: false) in
   * listHostStatus(), but stays in listHosts(). Registering the same id again replaces the lease.
   * `onBackgroundError` hears of each failed background re-registration (to log it).
   * The record is written as given (like upsertHost): merging identities is the caller's job.
   */
  async registerHost(
    host: HostRecord,
    ttlSeconds: number,
    opts: { onBackgroundError?: (err: StowageError) => void } = {},
  ): Promise<void> {
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) {
      throw new StowageError('INVALID_ARGUMENT', `a host lease TTL is whole seconds >= 1, not ${ttlSeconds}`);
    }
    await this.run(`register host ${host.id}`, () =>
      this.hosts.register(host, ttlSeconds, opts.onBackgroundError),
    );
  }

  /** Ids of the hosts whose lease is alive now. */
  async listLiveHostIds(): Promise<Set<string>> {
    return this.run('list live hosts', () => this.hosts.liveIds());
  }

  keepHostAlive(host: HostRecord, ttlSeconds: number, onError?: (err: Error) => void): Promise<void> {
    return this.registerHost(host, ttlSeconds, onError ? { onBackgroundError: onError } : {});
  }

  liveHosts(): Promise<Set<string>> {
    return this.listLiveHostIds();
  }

  /** Every recorded host with whether it is live (see registerHost), read at one revision. */
  async listHostStatus(): Promise<HostStatus[]> {
    return this.run('list hosts', () => this.hosts.status());
  }

  // ---- intents ----

  /**
   * The id is the etcd revision that created the intent's key: unique and increasing across all
   * hosts, and handed out without a shared counter that every host would contend for. The key is
   * read back in the same txn: should the put be sent twice (a retry on another endpoint), the id
   * is still that of the first write, the one listIntents reports.
   */
  async beginIntent(i: Omit<IntentRecord, 'id' | 'startedAt'>): Promise<number> {
    const k = this.k('intents', i.host, randomBytes(8).toString('hex'));
    return this.run(`record intent ${i.op} of ${i.volume}`, async () => {
      const [, [kv]] = await this.kv.readMany(
        putOp(k, { ...i, startedAt: new Date().toISOString() }),
        rangeOp(k),
      );
      if (!kv) throw new StowageError('INTERNAL', `intent ${k} vanished right after it was written`);
      return Number(kv.create_revision);
    });
  }

  async endIntent(id: number): Promise<void> {
    // etcd reads a create-revision bound of 0 as "no bound": never let 0 select every intent.
    if (!Number.isSafeInteger(id) || id < 1) return;
    await this.run(`end intent ${id}`, async () => {
      const [found] = await this.kv.readMany(
        rangeOp(`${this.k('intents')}/`, { prefix: true, keysOnly: true, createdAt: id }),
      );
      if (found.length > 0) await this.kv.write(...found.map((kv) => delOp(kv.key.toString())));
    });
  }

  async listIntents(host: string): Promise<IntentRecord[]> {
    return this.run(`list intents of ${host}`, async () => {
      const [kvs] = await this.kv.readMany(rangeOp(`${this.k('intents', host)}/`, { prefix: true }));
      return kvs
        .map((kv) => ({
          id: Number(kv.create_revision),
          ...parse<Omit<IntentRecord, 'id'>>(kv.value.toString()),
        }))
        .sort((a, b) => a.id - b.id);
    });
  }

  // ---- locks ----

  async tryLock(
    key: string,
    owner: string,
    ttlMs: number,
  ): Promise<{ acquired: boolean; holder?: LockHolder }> {
    const k = this.lockKey(key);
    return this.run(`lock ${key}`, () =>
      // First try assumes the lock is free: one round trip in the common case.
      this.kv.cas<{ acquired: boolean; holder?: LockHolder }>(k, null, (cur) => {
        const held = cur ? parse<LockHolder>(cur.value) : undefined;
        const now = Date.now();
        if (held && held.expiresAt > now && held.owner !== owner) {
          return { result: { acquired: false, holder: { owner: held.owner, expiresAt: held.expiresAt } } };
        }
        const mine: LockHolder = { owner, expiresAt: now + ttlMs };
        return { ops: [putOp(k, mine)], result: { acquired: true } };
      }),
    );
  }

  async unlock(key: string, owner: string): Promise<void> {
    await this.run(`unlock ${key}`, () => this.deleteLockOf(key, owner));
  }

  async breakLock(key: string, owner: string): Promise<void> {
    await this.run(`break lock ${key}`, () => this.deleteLockOf(key, owner));
  }

  /** Deletes the lock only while `owner` holds it: a lock taken over meanwhile is left alone. */
  private async deleteLockOf(key: string, owner: string): Promise<void> {
    const k = this.lockKey(key);
    await this.kv.cas(k, await this.kv.get(k), (cur) => ({
      ops: cur && parse<LockHolder>(cur.value).owner === owner ? [delOp(k)] : undefined,
      result: undefined,
    }));
  }

  // ---- request tallies (etcd-requests.ts) ----

  async recordRequest(host: string, sample: RequestSample): Promise<void> {
    await this.run(`count a ${sample.door} request`, () => this.requests.record(host, sample));
  }

  async requestTallies(host: string): Promise<RequestTally[]> {
    return this.run(`read request tallies of ${host}`, () => this.requests.list(host));
  }

  /**
   * Revokes the host leases (their hosts show as gone at once; with `{ revokeLeases: false }`
   * they run out after their TTL, as if this process had died) and closes the client. `exiting`
   * changes nothing here: the client is closed either way (a flexvolume call holds no lease).
   */
  async close(opts: CloseOptions & { revokeLeases?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.cache?.close();
    const revoke = opts.revokeLeases ?? true;
    // A lease that cannot be revoked (etcd down) runs out by itself after its TTL.
    await this.conn.run('close', () => this.hosts.stopAll(revoke)).catch(() => undefined);
    this.conn.close();
  }

  // ---- whole-store copies (`stowage state migrate`) ----

  /** Every host, volume, attachment and mount, read in pages at one revision. */
  exportAll(): Promise<StoreSnapshot> {
    return this.bulk().read();
  }

  /** Writes a snapshot in batched txns (see EtcdBulk.write); volumes are created only if absent. */
  async importAll(snapshot: StoreSnapshot): Promise<void> {
    await this.bulk().write(snapshot);
  }

  private bulk(): EtcdBulk {
    return new EtcdBulk(
      this.conn.client,
      (...segments) => this.k(...segments),
      (what, fn) => this.run(what, fn),
    );
  }

  // ---- etcd primitives ----

  /** An unconditional write of cached keys; answers once the read cache shows it (read-your-writes). */
  private async written(what: string, ...ops: IRequestOp[]): Promise<void> {
    const { revision, changed } = await this.run(what, () => this.kv.write(...ops));
    if (changed) await this.reads.wrote(revision);
  }

  private assertOpen(what: string): void {
    if (this.closed) throw new StowageError('INTERNAL', `${what}: the etcd store was already closed`);
  }

  private run<T>(what: string, fn: () => Promise<T>, timeoutMs?: number): Promise<T> {
    if (this.closed) {
      return Promise.reject(new StowageError('INTERNAL', `${what}: the etcd store was already closed`));
    }
    return this.conn.run(what, fn, timeoutMs);
  }
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
const byName = (a: { name: string }, b: { name: string }) => cmp(a.name, b.name);
const byHost = (a: { host: string }, b: { host: string }) => cmp(a.host, b.host);
const byVolume = (a: { volume: string }, b: { volume: string }) => cmp(a.volume, b.volume);
const byId = (a: { id: string }, b: { id: string }) => cmp(a.id, b.id);
