import type { Etcd3, IRangeResponse, IWatchRequest, IWatchResponse } from 'etcd3';
import { CACHED_FAMILIES, CacheTables } from './etcd-cache-tables.js';
import { prefixEnd } from './etcd-kv.js';

/**
 * Where the read cache stands:
 * - `loading`: no copy yet, or a new one being read after a compaction; reads go to etcd.
 * - `live`: the watch is connected and etcd answered it within `staleAfterMs`; reads are answered
 *   here.
 * - `stale`: etcd stopped answering (or the connection dropped); reads are still answered here,
 *   from the last revision applied, until the watch resumes.
 * - `closed`: the store was closed.
 */
export type ReadCacheState = 'loading' | 'live' | 'stale' | 'closed';

export interface ReadCacheHealth {
  state: ReadCacheState;
  /** The etcd revision the copy reflects (everything up to it is applied); 0 before the first load. */
  revision: number;
  volumes: number;
  /** When the current state began (ISO time). */
  since: string;
  /** Why it is stale or reloading. */
  reason?: string;
  /** Full reads of the prefix so far (the first included); resumes of the watch without one. */
  loads: number;
  resumes: number;
}

/** What the cache says about itself (the store logs it: a reload or a stale copy is worth a line). */
export type ReadCacheLog = (level: 'info' | 'warn', msg: string, details: Record<string, unknown>) => void;

export interface ReadCacheOptions {
  /** Bound of each range read of a load. */
  requestTimeoutMs: number;
  /** How often the watch is asked for progress (its heartbeat). Default 1000 ms. */
  heartbeatMs?: number;
  /** No answer on the watch for this long: stale. Default max(3 heartbeats, requestTimeoutMs). */
  staleAfterMs?: number;
  /** Keys read per range request of a load. Default 1000 (~400 kB: a small peak while loading). */
  pageSize?: number;
  log?: ReadCacheLog;
  /** Runs `fn` outside any store method's deadline (the cache lives as long as the store). */
  detached?: <T>(fn: () => T) => T;
}

type Stream = Awaited<ReturnType<Etcd3['watchClient']['watch']>>;

/** A watch stream's end: resumable from the next revision, or compacted past it (load again). */
type WatchEnd = { compacted: false; reason: string } | { compacted: true; reason: string };

const WATCH_ID = 1;

/**
 * A copy of the volumes, mounts and attachments under `prefix`, kept current by etcd's watch, the
 * way Kubernetes informers work: read the families once at one revision R (paged, all pages at R),
 * then watch the whole prefix from R+1 and apply each event in order. One watch over the prefix,
 * not one per family: etcd then delivers the events strictly in revision order, so "applied up
 * to R" is exact. Events of keys the tables do not keep (intents, locks, host liveness) pass by.
 *
 * - `revision` moves only with the events applied: etcd 3.4 answers a progress request with its
 *   current revision at once, not after the events before it were sent (3.5 waits), so a progress
 *   answer proves nothing about what this copy holds.
 * - The watch asks etcd for progress every heartbeat, to know etcd is answering. Without any answer
 *   for staleAfterMs, or when the stream breaks, the copy is marked stale and the watch resumes
 *   from the next revision, with backoff, until etcd answers again.
 * - When etcd has compacted past that revision (checked before resuming, and etcd cancels a watch
 *   that starts before its compaction anyway), the copy is read again in full and the watch starts
 *   after it: logged as a reload.
 * - waitFor(R) is read-your-own-writes: resolves once the event of revision R is applied (so R
 *   must be the revision of a write that changed a key under the prefix; see EtcdKv.write).
 */
export class EtcdReadCache {
  tables = new CacheTables();
  revision = 0;
  private state: ReadCacheState = 'loading';
  private since = new Date().toISOString();
  private reason: string | undefined;
  private loads = 0;
  private everLive = false;
  private resumes = 0;
  private needLoad = true;
  private closed = false;
  private stream: Stream | undefined;
  private endStream: ((end: WatchEnd) => void) | undefined;
  private lastHeard = 0;
  private heartbeat: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private hold: Promise<void> | undefined;
  private readonly waiters = new Set<{ revision: number; resolve: (ok: boolean) => void }>();
  private readonly readyWaiters = new Set<() => void>();
  private readonly heartbeatMs: number;
  private readonly staleAfterMs: number;
  private readonly pageSize: number;
  private readonly log: ReadCacheLog;
  private readonly detached: <T>(fn: () => T) => T;
  private readonly running: Promise<void>;

  constructor(
    private readonly client: Etcd3,
    private readonly prefix: string,
    private readonly opts: ReadCacheOptions,
  ) {
    this.heartbeatMs = opts.heartbeatMs ?? 1000;
    this.staleAfterMs = opts.staleAfterMs ?? Math.max(3 * this.heartbeatMs, opts.requestTimeoutMs);
    this.pageSize = opts.pageSize ?? 1000;
    this.log = opts.log ?? (() => undefined);
    this.detached = opts.detached ?? ((fn) => fn());
    this.running = this.detached(() => this.run());
  }

  /** True while reads may be answered from the copy (live, or stale with a copy). */
  get serving(): boolean {
    return this.state === 'live' || (this.state === 'stale' && this.loads > 0);
  }

  /** True from opening until the cache first goes live or something fails on the way. */
  get firstLoadPending(): boolean {
    return this.state === 'loading' && !this.everLive && this.reason === undefined;
  }

  get live(): boolean {
    return this.state === 'live';
  }

  health(): ReadCacheHealth {
    const h: ReadCacheHealth = {
      state: this.state,
      revision: this.revision,
      volumes: this.tables.volumeCount,
      since: this.since,
      loads: this.loads,
      resumes: this.resumes,
    };
    if (this.reason !== undefined) h.reason = this.reason;
    return h;
  }

  /** Resolves true once everything up to `revision` is applied, false after `timeoutMs` or on close. */
  waitFor(revision: number, timeoutMs: number): Promise<boolean> {
    if (this.revision >= revision) return Promise.resolve(true);
    if (this.closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const waiter = {
        revision,
        resolve: (ok: boolean) => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve(ok);
        },
      };
      const timer = setTimeout(() => waiter.resolve(false), timeoutMs);
      this.waiters.add(waiter);
    });
  }

  /** Resolves true once the cache is live, false after `timeoutMs` or on close. */
  whenLive(timeoutMs: number): Promise<boolean> {
    if (this.state === 'live') return Promise.resolve(true);
    if (this.closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.readyWaiters.delete(done);
        resolve(this.state === 'live');
      };
      const timer = setTimeout(done, timeoutMs);
      this.readyWaiters.add(done);
    });
  }

  /**
   * Test seam: breaks the watch stream as a dropped connection would. The cache resumes after its
   * backoff, or, given `hold`, not before that promise settles (so a test can change etcd first).
   */
  dropWatch(hold?: Promise<unknown>): void {
    if (hold)
      this.hold = hold.then(
        () => undefined,
        () => undefined,
      );
    this.stream?.cancel();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.setState('closed');
    this.endStream?.({ compacted: false, reason: 'closed' });
    this.wake?.();
    for (const w of [...this.waiters]) w.resolve(false);
    for (const r of [...this.readyWaiters]) r();
    // Not awaited: a load still waiting on a hung etcd ends when the store closes the client.
    void this.running;
  }

  // ---- the loop: load, watch, resume or reload ----

  private async run(): Promise<void> {
    let backoffMs = 100;
    while (!this.closed) {
      const resumesBefore = this.resumes + this.loads;
      try {
        if (this.needLoad) await this.load();
        else await this.checkNotCompacted();
        const end = this.needLoad ? undefined : await this.watch();
        if (!end) continue;
        if (this.closed) break;
        if (end.compacted) {
          this.needLoad = true;
          this.setState('loading', end.reason);
          this.log('warn', 'etcd read cache: the watch fell behind a compaction; reading the store again', {
            revision: this.revision,
            reason: end.reason,
          });
          continue;
        }
        this.markStale(end.reason);
      } catch (err) {
        if (this.closed) break;
        this.markStale(err instanceof Error ? err.message : String(err));
      }
      // Back off while etcd keeps failing; start small again after a round that got through.
      backoffMs = this.resumes + this.loads > resumesBefore ? 100 : Math.min(backoffMs * 2, 1000);
      await this.pause(backoffMs);
      if (this.hold) await this.hold;
      this.hold = undefined;
    }
  }

  /** Reads the cached families at one revision (the first page's), page by page. */
  private async load(): Promise<void> {
    const started = Date.now();
    const tables = new CacheTables();
    let at = 0;
    for (const family of CACHED_FAMILIES) {
      const start = Buffer.from(`${this.prefix}/${family}/`);
      const end = prefixEnd(start);
      let from = start;
      for (;;) {
        const res: IRangeResponse = await this.client.kv.range(
          { key: from, range_end: end, limit: this.pageSize, ...(at ? { revision: at } : {}) },
          { deadline: Date.now() + this.opts.requestTimeoutMs },
        );
        if (!at) at = Number(res.header.revision);
        for (const kv of res.kvs) tables.apply(this.rest(kv.key), kv.value.toString());
        const last = res.kvs[res.kvs.length - 1];
        if (!res.more || !last) break;
        from = Buffer.concat([last.key, Buffer.from([0])]);
      }
    }
    this.tables = tables;
    this.revision = at;
    this.loads++;
    this.needLoad = false;
    this.log('info', 'etcd read cache: loaded', {
      revision: at,
      volumes: tables.volumeCount,
      ms: Date.now() - started,
      loads: this.loads,
    });
  }

  /**
   * Before resuming from revision+1: a read at `revision` fails once etcd compacted past it, and
   * then the copy is read again. (A watch started there would be cancelled too, but etcd 3.4 may
   * answer its progress request first, and the copy would pass for live for a moment.)
   */
  private async checkNotCompacted(): Promise<void> {
    try {
      await this.client.kv.range(
        { key: Buffer.from(`${this.prefix}/`), revision: this.revision, count_only: true },
        { deadline: Date.now() + this.opts.requestTimeoutMs },
      );
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      if (!/compacted/i.test(msg)) throw err;
      this.needLoad = true;
      const reason = `etcd compacted its history past revision ${this.revision}`;
      this.setState('loading', reason);
      this.log('warn', 'etcd read cache: the watch fell behind a compaction; reading the store again', {
        revision: this.revision,
        reason,
      });
    }
  }

  /** Watches the prefix from revision+1 until the stream ends; says how it ended. */
  private async watch(): Promise<WatchEnd> {
    const stream = await this.client.watchClient.watch();
    this.stream = stream;
    this.lastHeard = Date.now();
    const ended = new Promise<WatchEnd>((resolve) => {
      this.endStream = resolve;
    });
    const end = (e: WatchEnd) => {
      if (this.stream === stream) this.endStream?.(e);
    };
    stream.on('data', (res: IWatchResponse) => {
      if (this.stream === stream) this.onResponse(res, end);
    });
    // A cancelled stream still reports its cancellation: heard, and ignored, once it is not current.
    stream.on('error', (err: Error) => end({ compacted: false, reason: tidy(err.message) }));
    stream.on('end', () => end({ compacted: false, reason: 'etcd ended the watch stream' }));
    const start = Buffer.from(`${this.prefix}/`);
    this.send({
      create_request: {
        key: start,
        range_end: prefixEnd(start),
        start_revision: this.revision + 1,
        watch_id: WATCH_ID,
      },
    });
    this.send({ progress_request: {} });
    this.heartbeat = setInterval(() => this.beat(end), this.heartbeatMs);
    this.heartbeat.unref();
    try {
      return await ended;
    } finally {
      clearInterval(this.heartbeat);
      this.endStream = undefined;
      this.stream = undefined;
      stream.cancel();
    }
  }

  private onResponse(res: IWatchResponse, end: (e: WatchEnd) => void): void {
    this.lastHeard = Date.now();
    if (res.canceled) {
      const compactedAt = Number(res.compact_revision);
      if (compactedAt > 0) {
        end({ compacted: true, reason: `etcd compacted its history up to revision ${compactedAt}` });
      } else
        end({
          compacted: false,
          reason: `etcd cancelled the watch: ${res.cancel_reason || 'no reason given'}`,
        });
      return;
    }
    if (res.created) return; // the events (and the first progress answer) follow
    let top = this.revision;
    for (const ev of res.events) {
      this.tables.apply(this.rest(ev.kv.key), ev.type === 'Delete' ? undefined : ev.kv.value.toString());
      top = Math.max(top, Number(ev.kv.mod_revision));
    }
    this.advance(top);
    // A progress answer (watch id -1): etcd is answering this watch.
    if (res.events.length === 0 && Number(res.watch_id) !== WATCH_ID && this.state !== 'live')
      this.becomeLive();
  }

  private becomeLive(): void {
    const was = this.state;
    const reason = this.reason;
    this.setState('live');
    this.everLive = true;
    if (was === 'stale') {
      this.resumes++;
      this.log('info', 'etcd read cache: the watch is answering again; reads are current', {
        revision: this.revision,
        wasStaleBecause: reason,
      });
    }
    for (const r of [...this.readyWaiters]) r();
  }

  private advance(revision: number): void {
    if (revision <= this.revision) return;
    this.revision = revision;
    for (const w of [...this.waiters]) if (w.revision <= revision) w.resolve(true);
  }

  private beat(end: (e: WatchEnd) => void): void {
    const silent = Date.now() - this.lastHeard;
    if (silent > this.staleAfterMs) {
      end({ compacted: false, reason: `etcd did not answer the watch for ${silent} ms` });
      return;
    }
    this.send({ progress_request: {} });
  }

  private markStale(reason: string): void {
    if (this.state === 'live' || this.state === 'loading') {
      this.setState(this.loads > 0 ? 'stale' : 'loading', reason);
      this.log('warn', 'etcd read cache: lost the watch; reads answer from the last copy, marked stale', {
        revision: this.revision,
        reason,
      });
    } else this.reason = reason;
  }

  private setState(state: ReadCacheState, reason?: string): void {
    if (state !== this.state) this.since = new Date().toISOString();
    this.state = state;
    this.reason = reason;
  }

  private send(req: IWatchRequest): void {
    if (!this.stream) return;
    try {
      this.stream.write(req);
    } catch {
      // the stream is breaking: its 'error' ends this watch and the loop resumes
    }
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      timer.unref();
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }

  private rest(key: Buffer): string {
    return key.toString().slice(this.prefix.length + 1);
  }
}

/** grpc's messages carry newlines and timestamps. */
function tidy(msg: string): string {
  return msg
    .replace(/\s*\(\d{4}-\d\d-\d\dT[^)]*\)/g, '')
    .replace(/\s+/g, ' ')
    .trim();
}
