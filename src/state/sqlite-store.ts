import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { StowageError } from '../base/errors.js';
import { MIGRATIONS } from './sqlite-migrations.js';
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
  VolumeRecord,
  VolumeState,
  VolumeSummary,
} from './store.js';

type Row = Record<string, unknown>;

/** Enough for every volume's record, mounts and attachments at 10,000+ volumes. */
const MAX_CACHED_READS = 100_000;

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/**
 * Embedded store on SQLite in WAL mode. The daemon and short-lived processes (CLI, flexvolume) on
 * the same host open the same file at once: WAL lets readers proceed during a write, and
 * busy_timeout bounds how long a writer waits for another writer.
 */
export class SqliteStore implements StateStore {
  readonly kind = 'sqlite';
  private readonly db: Database.Database;
  private readonly stmts: ReturnType<SqliteStore['prepare']>;
  /**
   * Answers of the hot reads (Docker's Get, Path and List), reused while the database is
   * unchanged: data_version moves when another connection commits, total_changes() when we do.
   * Cached values are deep-frozen, so a caller that tries to modify one fails loudly.
   */
  private readonly readCache = new Map<string, unknown>();
  private cacheVersion = { d: -1, t: -1 };

  constructor(
    readonly path: string,
    /** nativeBinding: the addon's path when bundled (the flexvolume executable carries its own). */
    opts: { busyTimeoutMs?: number; nativeBinding?: string } = {},
  ) {
    try {
      if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      this.db = new Database(path, opts.nativeBinding ? { nativeBinding: opts.nativeBinding } : {});
      this.db.pragma(`busy_timeout = ${opts.busyTimeoutMs ?? 5000}`);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      this.migrate();
    } catch (err) {
      throw new StowageError(
        'UNAVAILABLE',
        `cannot open the state database ${path}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    this.stmts = this.prepare();
  }

  /** Number of migrations applied; equals MIGRATIONS.length after open. */
  schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  private migrate(): void {
    const current = this.schemaVersion();
    if (current > MIGRATIONS.length) {
      throw new Error(
        `schema version ${current} is newer than this stowage knows (${MIGRATIONS.length}); upgrade stowage`,
      );
    }
    for (let v = current; v < MIGRATIONS.length; v++) {
      this.db
        .transaction(() => {
          this.db.exec(MIGRATIONS[v]!);
          this.db.pragma(`user_version = ${v + 1}`);
        })
        .immediate();
    }
  }

  private prepare() {
    const d = this.db;
    return {
      // Two plain statements: cheaper than one query over the pragma_data_version table function.
      dataVersion: d.prepare('PRAGMA data_version').pluck(),
      totalChanges: d.prepare('SELECT total_changes()').pluck(),
      getVolume: d.prepare('SELECT * FROM volumes WHERE name = ?'),
      listVolumes: d.prepare('SELECT * FROM volumes ORDER BY name'),
      listVolumesByDriver: d.prepare('SELECT * FROM volumes WHERE driver = ? ORDER BY name'),
      summaries: d.prepare(
        `SELECT v.name, v.driver, v.created_at, m.mountpoint FROM volumes v
         LEFT JOIN mounts m ON m.volume = v.name AND m.host = ? AND m.state = 'mounted' ORDER BY v.name`,
      ),
      summariesByDriver: d.prepare(
        `SELECT v.name, v.driver, v.created_at, m.mountpoint FROM volumes v
         LEFT JOIN mounts m ON m.volume = v.name AND m.host = ? AND m.state = 'mounted'
         WHERE v.driver = ? ORDER BY v.name`,
      ),
      insertVolume: d.prepare(
        `INSERT INTO volumes (name, driver, options, given_options, remove_policy, adopted, created_at, status, fields)
         VALUES (@name, @driver, @options, @given_options, @remove_policy, @adopted, @created_at, @status, @fields)`,
      ),
      deleteVolume: d.prepare('DELETE FROM volumes WHERE name = ?'),
      getAttachments: d.prepare('SELECT * FROM attachments WHERE volume = ? ORDER BY host'),
      attachmentsByHost: d.prepare('SELECT * FROM attachments WHERE host = ? ORDER BY volume'),
      putAttachment: d.prepare(
        `INSERT INTO attachments (volume, host, device, state, updated_at) VALUES (@volume, @host, @device, @state, @updated_at)
         ON CONFLICT (volume, host) DO UPDATE SET device = excluded.device, state = excluded.state, updated_at = excluded.updated_at`,
      ),
      deleteAttachment: d.prepare('DELETE FROM attachments WHERE volume = ? AND host = ?'),
      getMounts: d.prepare('SELECT * FROM mounts WHERE volume = ? ORDER BY host'),
      mountsByHost: d.prepare('SELECT * FROM mounts WHERE host = ? ORDER BY volume'),
      putMount: d.prepare(
        `INSERT INTO mounts (volume, host, mountpoint, refs, state, updated_at) VALUES (@volume, @host, @mountpoint, @refs, @state, @updated_at)
         ON CONFLICT (volume, host) DO UPDATE SET mountpoint = excluded.mountpoint, refs = excluded.refs,
           state = excluded.state, updated_at = excluded.updated_at`,
      ),
      deleteMount: d.prepare('DELETE FROM mounts WHERE volume = ? AND host = ?'),
      upsertHost: d.prepare(
        `INSERT INTO hosts (id, identity, last_seen) VALUES (@id, @identity, @last_seen)
         ON CONFLICT (id) DO UPDATE SET identity = excluded.identity, last_seen = excluded.last_seen`,
      ),
      listHosts: d.prepare('SELECT * FROM hosts ORDER BY id'),
      beginIntent: d.prepare(
        'INSERT INTO journal (volume, host, op, details, started_at) VALUES (@volume, @host, @op, @details, @started_at)',
      ),
      endIntent: d.prepare('DELETE FROM journal WHERE id = ?'),
      listIntents: d.prepare('SELECT * FROM journal WHERE host = ? ORDER BY id'),
      getLock: d.prepare('SELECT owner, expires_at FROM locks WHERE key = ?'),
      putLock: d.prepare(
        `INSERT INTO locks (key, owner, expires_at) VALUES (?, ?, ?)
         ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at`,
      ),
      deleteLock: d.prepare('DELETE FROM locks WHERE key = ? AND owner = ?'),
      recordRequest: d.prepare(
        `INSERT INTO request_tallies (host, door, driver, operation, code, le, count, seconds)
         VALUES (@host, @door, @driver, @operation, @code, @le, 1, @seconds)
         ON CONFLICT (host, door, driver, operation, code, le) DO UPDATE SET
           count = count + 1, seconds = seconds + excluded.seconds`,
      ),
      requestTallies: d.prepare(
        'SELECT door, driver, operation, code, le, count, seconds FROM request_tallies WHERE host = ?',
      ),
    };
  }

  async getVolume(name: string): Promise<VolumeRecord | undefined> {
    return this.cached(`v\0${name}`, () => {
      const row = this.stmts.getVolume.get(name) as Row | undefined;
      return row ? toVolume(row) : undefined;
    });
  }

  async getVolumeState(name: string): Promise<VolumeState> {
    return this.cached(`vs\0${name}`, () => {
      const row = this.stmts.getVolume.get(name) as Row | undefined;
      const state: VolumeState = {
        mounts: (this.stmts.getMounts.all(name) as Row[]).map(toMount),
        attachments: (this.stmts.getAttachments.all(name) as Row[]).map(toAttachment),
      };
      if (row) state.volume = toVolume(row);
      return state;
    });
  }

  async listVolumes(filter: { driver?: string } = {}): Promise<VolumeRecord[]> {
    const rows = (
      filter.driver ? this.stmts.listVolumesByDriver.all(filter.driver) : this.stmts.listVolumes.all()
    ) as Row[];
    return rows.map(toVolume);
  }

  /** The returned array is shared (and frozen): Docker's List asks often, it is the one large read. */
  async listVolumeSummaries(host: string, filter: { driver?: string } = {}): Promise<VolumeSummary[]> {
    return this.cached(`s\0${host}\0${filter.driver ?? ''}`, () => this.querySummaries(host, filter));
  }

  private cached<T>(key: string, load: () => T): T {
    const v = { d: this.stmts.dataVersion.get() as number, t: this.stmts.totalChanges.get() as number };
    if (v.d !== this.cacheVersion.d || v.t !== this.cacheVersion.t) {
      this.readCache.clear();
      this.cacheVersion = v;
    }
    if (this.readCache.has(key)) return this.readCache.get(key) as T;
    const value = deepFreeze(load());
    if (this.readCache.size < MAX_CACHED_READS) this.readCache.set(key, value);
    return value;
  }

  private querySummaries(host: string, filter: { driver?: string }): VolumeSummary[] {
    const rows = (
      filter.driver ? this.stmts.summariesByDriver.all(host, filter.driver) : this.stmts.summaries.all(host)
    ) as Row[];
    return rows.map((r) => {
      const s: VolumeSummary = {
        name: r.name as string,
        driver: r.driver as string,
        createdAt: r.created_at as string,
      };
      if (r.mountpoint) s.mountpoint = r.mountpoint as string;
      return s;
    });
  }

  async insertVolume(v: VolumeRecord): Promise<void> {
    try {
      this.stmts.insertVolume.run({
        name: v.name,
        driver: v.driver,
        options: JSON.stringify(v.options),
        given_options: JSON.stringify(v.givenOptions),
        remove_policy: v.removePolicy,
        adopted: v.adopted ? 1 : 0,
        created_at: v.createdAt,
        status: v.status,
        fields: JSON.stringify(v.fields),
      });
    } catch (err) {
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
        throw new StowageError('CONFLICT', `volume ${v.name} already exists`);
      }
      throw err;
    }
  }

  async updateVolume(
    name: string,
    patch: Partial<Pick<VolumeRecord, 'status' | 'fields' | 'adopted' | 'removePolicy'>>,
  ): Promise<void> {
    const sets: string[] = [];
    const params: Record<string, unknown> = { name };
    if (patch.status !== undefined) {
      sets.push('status = @status');
      params.status = patch.status;
    }
    if (patch.fields !== undefined) {
      sets.push('fields = @fields');
      params.fields = JSON.stringify(patch.fields);
    }
    if (patch.adopted !== undefined) {
      sets.push('adopted = @adopted');
      params.adopted = patch.adopted ? 1 : 0;
    }
    if (patch.removePolicy !== undefined) {
      sets.push('remove_policy = @remove_policy');
      params.remove_policy = patch.removePolicy;
    }
    if (sets.length === 0) return;
    const info = this.db.prepare(`UPDATE volumes SET ${sets.join(', ')} WHERE name = @name`).run(params);
    if (info.changes === 0) throw new StowageError('NOT_FOUND', `volume ${name} does not exist`);
  }

  async deleteVolume(name: string): Promise<void> {
    this.stmts.deleteVolume.run(name);
  }

  async getAttachments(volume: string): Promise<AttachmentRecord[]> {
    return this.cached(`a\0${volume}`, () =>
      (this.stmts.getAttachments.all(volume) as Row[]).map(toAttachment),
    );
  }

  async listAttachmentsByHost(host: string): Promise<AttachmentRecord[]> {
    return (this.stmts.attachmentsByHost.all(host) as Row[]).map(toAttachment);
  }

  async putAttachment(a: AttachmentRecord): Promise<void> {
    this.stmts.putAttachment.run({
      volume: a.volume,
      host: a.host,
      device: a.device,
      state: a.state,
      updated_at: a.updatedAt,
    });
  }

  async deleteAttachment(volume: string, host: string): Promise<void> {
    this.stmts.deleteAttachment.run(volume, host);
  }

  async getMounts(volume: string): Promise<MountRecord[]> {
    return this.cached(`m\0${volume}`, () => (this.stmts.getMounts.all(volume) as Row[]).map(toMount));
  }

  async listMountsByHost(host: string): Promise<MountRecord[]> {
    return (this.stmts.mountsByHost.all(host) as Row[]).map(toMount);
  }

  async putMount(m: MountRecord): Promise<void> {
    this.stmts.putMount.run({
      volume: m.volume,
      host: m.host,
      mountpoint: m.mountpoint,
      refs: JSON.stringify(m.refs),
      state: m.state,
      updated_at: m.updatedAt,
    });
  }

  async deleteMount(volume: string, host: string): Promise<void> {
    this.stmts.deleteMount.run(volume, host);
  }

  async upsertHost(h: HostRecord): Promise<void> {
    this.stmts.upsertHost.run({ id: h.id, identity: JSON.stringify(h.identity), last_seen: h.lastSeen });
  }

  async listHosts(): Promise<HostRecord[]> {
    return (this.stmts.listHosts.all() as Row[]).map((r) => ({
      id: r.id as string,
      identity: JSON.parse(r.identity as string) as Record<string, unknown>,
      lastSeen: r.last_seen as string,
    }));
  }

  async beginIntent(i: Omit<IntentRecord, 'id' | 'startedAt'>): Promise<number> {
    const info = this.stmts.beginIntent.run({
      volume: i.volume,
      host: i.host,
      op: i.op,
      details: JSON.stringify(i.details),
      started_at: new Date().toISOString(),
    });
    return Number(info.lastInsertRowid);
  }

  async endIntent(id: number): Promise<void> {
    this.stmts.endIntent.run(id);
  }

  async listIntents(host: string): Promise<IntentRecord[]> {
    return (this.stmts.listIntents.all(host) as Row[]).map((r) => ({
      id: r.id as number,
      volume: r.volume as string,
      host: r.host as string,
      op: r.op as IntentRecord['op'],
      details: JSON.parse(r.details as string) as Record<string, unknown>,
      startedAt: r.started_at as string,
    }));
  }

  async tryLock(
    key: string,
    owner: string,
    ttlMs: number,
  ): Promise<{ acquired: boolean; holder?: LockHolder }> {
    // IMMEDIATE takes the write lock up front, so read-then-write cannot interleave with another process.
    return this.db
      .transaction(() => {
        const now = Date.now();
        const row = this.stmts.getLock.get(key) as { owner: string; expires_at: number } | undefined;
        if (row && row.expires_at > now && row.owner !== owner) {
          return { acquired: false, holder: { owner: row.owner, expiresAt: row.expires_at } };
        }
        this.stmts.putLock.run(key, owner, now + ttlMs);
        return { acquired: true };
      })
      .immediate();
  }

  async unlock(key: string, owner: string): Promise<void> {
    this.stmts.deleteLock.run(key, owner);
  }

  async breakLock(key: string, owner: string): Promise<void> {
    this.stmts.deleteLock.run(key, owner);
  }

  /** One statement, its own implicit transaction: counted up in place, never read back first. */
  async recordRequest(host: string, r: RequestSample): Promise<void> {
    this.stmts.recordRequest.run({
      host,
      door: r.door,
      driver: r.driver,
      operation: r.operation,
      code: r.code,
      le: r.le,
      seconds: r.seconds,
    });
  }

  async requestTallies(host: string): Promise<RequestTally[]> {
    return this.stmts.requestTallies.all(host) as RequestTally[];
  }

  async close(opts: CloseOptions = {}): Promise<void> {
    if (opts.exiting) {
      // Not db.close(): see CloseOptions. Should the process not exit after all, better-sqlite3
      // closes the database when node tears down, with the checkpoint.
      return;
    }
    if (this.db.open) this.db.close();
  }
}

function toVolume(r: Row): VolumeRecord {
  return {
    name: r.name as string,
    driver: r.driver as string,
    options: JSON.parse(r.options as string) as Record<string, unknown>,
    givenOptions: JSON.parse(r.given_options as string) as string[],
    removePolicy: r.remove_policy as VolumeRecord['removePolicy'],
    adopted: r.adopted === 1,
    createdAt: r.created_at as string,
    status: r.status as VolumeRecord['status'],
    fields: JSON.parse(r.fields as string) as Record<string, unknown>,
  };
}

function toAttachment(r: Row): AttachmentRecord {
  return {
    volume: r.volume as string,
    host: r.host as string,
    device: r.device as string,
    state: r.state as AttachmentRecord['state'],
    updatedAt: r.updated_at as string,
  };
}

function toMount(r: Row): MountRecord {
  return {
    volume: r.volume as string,
    host: r.host as string,
    mountpoint: r.mountpoint as string,
    refs: JSON.parse(r.refs as string) as Record<string, number>,
    state: r.state as MountRecord['state'],
    updatedAt: r.updated_at as string,
  };
}
