/**
 * The metadata store: the one truth about volumes, attachments and mounts, shared by the Docker
 * daemon and the flexvolume executable (and, with a distributed backend, by every host).
 *
 * Contract (every backend passes test/state/store-contract.ts):
 * - Methods are async even where the backend is not, so SQLite and etcd are interchangeable.
 * - insertVolume refuses an existing name with CONFLICT; deletes of missing rows succeed.
 * - Mount refs are a multiset: id -> count. A mount row with no refs is a mount whose teardown
 *   has not finished (state 'unmounting') and must be retried, never forgotten.
 * - tryLock is a try-lock with an expiry; waiting and backoff belong to the caller (core/locks.ts).
 */
export type RemovePolicy = 'delete' | 'retain' | 'archive';
export type VolumeStatus = 'creating' | 'ready' | 'removing';

export interface VolumeRecord {
  name: string;
  driver: string;
  /** Validated, canonical options (defaults applied) as the driver's schema produced them. */
  options: Record<string, unknown>;
  /** Canonical option names the user gave explicitly. */
  givenOptions: string[];
  removePolicy: RemovePolicy;
  /** True when Create found existing data and took it over instead of provisioning it. */
  adopted: boolean;
  createdAt: string;
  status: VolumeStatus;
  /** Driver-owned facts (image path, cloud volume id, ...), opaque to the core. */
  fields: Record<string, unknown>;
}

export type AttachmentState = 'attaching' | 'attached' | 'detaching';
export interface AttachmentRecord {
  volume: string;
  host: string;
  device: string;
  state: AttachmentState;
  updatedAt: string;
}

export type MountState = 'mounting' | 'mounted' | 'unmounting';
export interface MountRecord {
  volume: string;
  host: string;
  mountpoint: string;
  /** Docker mount ids / pod uids using this mount, with multiplicity. */
  refs: Record<string, number>;
  state: MountState;
  updatedAt: string;
}

export interface HostRecord {
  id: string;
  identity: Record<string, unknown>;
  lastSeen: string;
}

export type IntentOp =
  | 'create'
  | 'remove'
  | 'attach'
  | 'mount'
  | 'unmount'
  | 'detach'
  | 'resize'
  | 'publish'
  | 'unpublish';
export interface IntentRecord {
  id: number;
  volume: string;
  host: string;
  op: IntentOp;
  details: Record<string, unknown>;
  startedAt: string;
}

export interface VolumeSummary {
  name: string;
  driver: string;
  createdAt: string;
  /** The mountpoint on the asking host, when it is mounted there. */
  mountpoint?: string;
}

/** A volume with its mounts and attachments on every host, read at one point in time. */
export interface VolumeState {
  volume?: VolumeRecord;
  mounts: MountRecord[];
  attachments: AttachmentRecord[];
}

/**
 * One request answered by a door whose process ends with the call and so cannot serve metrics
 * itself (the flexvolume executable, the CLI). It records the request here; the daemon on the same
 * host reads the tallies at each scrape (docs/metrics.md).
 */
export interface RequestSample {
  door: string;
  driver: string;
  operation: string;
  /** `OK` or the StowageError code the request failed with. */
  code: string;
  /** The latency bucket it fell in, as Prometheus writes `le`: `"0.005"`, or `"+Inf"`. */
  le: string;
  seconds: number;
}

/**
 * The requests of one host with the same door, driver, operation, code and bucket: how many, and
 * their seconds added up. Totals since the store was made: they only grow.
 */
export interface RequestTally extends RequestSample {
  count: number;
}

export interface LockHolder {
  owner: string;
  expiresAt: number;
}

/**
 * How current the answers of Get, Path and List are, for stores that answer them from a copy
 * (etcd's read cache). `stale`: the store stopped hearing from its backend at `since`; the
 * answers are those of `revision` and may miss changes made since (on other hosts, or here).
 */
export interface StoreFreshness {
  /** True when reads come from a watch-fed copy; false: every read goes to the backend. */
  cached: boolean;
  stale: boolean;
  /** loading, live, stale or closed (see ReadCacheState); absent when not cached. */
  state?: string;
  revision?: number;
  since?: string;
  reason?: string;
}

export interface StateStore {
  readonly kind: string;

  /** Shared stores with a read cache: how current reads are (inspect and doctor show it). */
  freshness?(): StoreFreshness;

  getVolume(name: string): Promise<VolumeRecord | undefined>;
  /** Volume, mounts and attachments in one consistent read (Docker's Get and Path ask for this). */
  getVolumeState(name: string): Promise<VolumeState>;
  listVolumes(filter?: { driver?: string }): Promise<VolumeRecord[]>;
  /** Lean listing for Docker's List: name, driver, created-at and this host's mountpoint. */
  listVolumeSummaries(host: string, filter?: { driver?: string }): Promise<VolumeSummary[]>;
  insertVolume(volume: VolumeRecord): Promise<void>;
  updateVolume(
    name: string,
    patch: Partial<Pick<VolumeRecord, 'status' | 'fields' | 'adopted' | 'removePolicy'>>,
  ): Promise<void>;
  deleteVolume(name: string): Promise<void>;

  getAttachments(volume: string): Promise<AttachmentRecord[]>;
  listAttachmentsByHost(host: string): Promise<AttachmentRecord[]>;
  putAttachment(attachment: AttachmentRecord): Promise<void>;
  deleteAttachment(volume: string, host: string): Promise<void>;

  getMounts(volume: string): Promise<MountRecord[]>;
  listMountsByHost(host: string): Promise<MountRecord[]>;
  putMount(mount: MountRecord): Promise<void>;
  deleteMount(volume: string, host: string): Promise<void>;

  upsertHost(host: HostRecord): Promise<void>;
  listHosts(): Promise<HostRecord[]>;
  /**
   * Shared stores only: records the host and keeps it alive with a lease while this process runs.
   * A host whose lease ran out (process or machine dead, network cut) is "gone".
   */
  keepHostAlive?(host: HostRecord, ttlSeconds: number, onError?: (err: Error) => void): Promise<void>;
  /** Shared stores only: the hosts whose lease is alive. Without it every recorded host counts as live. */
  liveHosts?(): Promise<Set<string>>;

  beginIntent(intent: Omit<IntentRecord, 'id' | 'startedAt'>): Promise<number>;
  endIntent(id: number): Promise<void>;
  listIntents(host: string): Promise<IntentRecord[]>;

  /** Takes `key` for `owner` until `ttlMs` from now; an expired holder is replaced. */
  tryLock(key: string, owner: string, ttlMs: number): Promise<{ acquired: boolean; holder?: LockHolder }>;
  unlock(key: string, owner: string): Promise<void>;
  /** Removes a lock whose holder is known to be dead (same host, process gone). */
  breakLock(key: string, owner: string): Promise<void>;

  /** Adds one request to `host`'s tally of its labels and bucket: a single write (an upsert). */
  recordRequest(host: string, sample: RequestSample): Promise<void>;
  /** Every tally of `host` (in no particular order); `seconds` is the sum of the tally's requests. */
  requestTallies(host: string): Promise<RequestTally[]>;

  close(opts?: CloseOptions): Promise<void>;
}

export interface CloseOptions {
  /**
   * The process exits right after (the flexvolume executable, once its reply is written): work
   * that only tidies up may be left to the next opener. SQLite: the last connection's close
   * checkpoints the write-ahead log into the database and deletes it (four fsyncs, ~1-2 ms on a
   * quiet disk, far more on a busy one); left in place, it is read by the next opener and
   * checkpointed by a later writer. Every committed write is in the log either way. The store must
   * not be used after close.
   */
  exiting?: boolean;
}

/** True when several hosts share the store (etcd): names and attachments are cluster-wide. */
export function isShared(store: Pick<StateStore, 'kind'>): boolean {
  return store.kind !== 'sqlite';
}

export function totalRefs(mount: Pick<MountRecord, 'refs'>): number {
  let n = 0;
  for (const count of Object.values(mount.refs)) n += count;
  return n;
}
