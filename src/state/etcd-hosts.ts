import type { Etcd3, IRequestOp, Lease } from 'etcd3';
import type { StowageError } from '../base/errors.js';
import type { EtcdConnection } from './etcd-client.js';
import { type EtcdKv, lastSegment, putOp, rangeOp, values } from './etcd-kv.js';
import type { HostRecord } from './store.js';

/** A host record with whether its process currently holds its lease. */
export interface HostStatus extends HostRecord {
  live: boolean;
}

/**
 * Host liveness through an etcd lease.
 *
 * Two keys per host:
 * - `<prefix>/hosts/<id>`: the HostRecord, without a lease. It stays when the host dies, so
 *   listHosts() still names every host that ever registered (and what it attached/mounted).
 * - `<prefix>/alive/<id>`: a small marker bound to a lease of `ttlSeconds`, kept alive from this
 *   process. etcd deletes it by itself when the lease ends: the process was killed, the host went
 *   down or was cut off from etcd for longer than the TTL, or close() revoked it.
 * A host is live while its alive key exists, and gone when its record exists without one.
 *
 * Keeping the lease: etcd3's Lease sends keepalives every TTL/3 on a stream. When it gives up
 * (etcd says the lease expired, or no keepalive got through for 2*TTL) it emits 'lost'; we then
 * grant a new lease and put the alive key again, retrying with backoff (capped at the TTL) until
 * it works or the registration is stopped. So a host that was cut off shows as gone, then as live
 * again once it reaches etcd, without anyone calling registerHost again.
 */
export class EtcdHosts {
  private readonly leases = new Map<string, HostLease>();

  constructor(
    private readonly conn: EtcdConnection,
    private readonly kv: EtcdKv,
    /** `<prefix>/<segments...>`, the store's key builder. */
    private readonly key: (...segments: string[]) => string,
  ) {}

  /** See EtcdStore.registerHost. Runs inside the store method's deadline. */
  async register(host: HostRecord, ttlSeconds: number, onBackgroundError?: (err: StowageError) => void) {
    const lease = new HostLease(
      this.conn.client,
      (fn) => this.conn.detached(fn),
      this.key('alive', host.id),
      ttlSeconds,
      (err) => onBackgroundError?.(this.conn.translate(err, `keep host ${host.id} registered`)),
    );
    await lease.start([putOp(this.key('hosts', host.id), host)]);
    const previous = this.leases.get(host.id);
    this.leases.set(host.id, lease);
    await previous?.stop(false); // the alive key is bound to the new lease now; the old one just runs out
  }

  async liveIds(): Promise<Set<string>> {
    const [alive] = await this.kv.readMany(
      rangeOp(`${this.key('alive')}/`, { prefix: true, keysOnly: true }),
    );
    return new Set(alive.map(lastSegment));
  }

  /** Every recorded host and whether it is live, read at one revision. */
  async status(): Promise<HostStatus[]> {
    const [hosts, alive] = await this.kv.readMany(
      rangeOp(`${this.key('hosts')}/`, { prefix: true }),
      rangeOp(`${this.key('alive')}/`, { prefix: true, keysOnly: true }),
    );
    const live = new Set(alive.map(lastSegment));
    return values<HostRecord>(hosts)
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .map((h) => ({ ...h, live: live.has(h.id) }));
  }

  /** Stops every lease this process keeps (see HostLease.stop). */
  async stopAll(revoke: boolean): Promise<void> {
    const leases = [...this.leases.values()];
    this.leases.clear();
    await Promise.all(leases.map((l) => l.stop(revoke)));
  }
}

/** One host's lease and its alive key, kept in the background (see the comment above). */
class HostLease {
  private lease: Lease | undefined;
  private stopped = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelayMs = 250;
  private revokeOnStop = true;

  constructor(
    private readonly client: Etcd3,
    /** Runs background work outside the deadline of the store method that registered the host. */
    private readonly detached: <T>(fn: () => T) => T,
    private readonly aliveKey: string,
    private readonly ttlSeconds: number,
    /** Called for each failed re-registration in the background (to log it); never throws. */
    private readonly onBackgroundError: (err: unknown) => void = () => undefined,
  ) {}

  /**
   * Grants the lease and writes the alive key, plus `extraOps` (the host record) in the same txn.
   * Rejects (and keeps nothing running) when etcd cannot be reached.
   */
  async start(extraOps: IRequestOp[]): Promise<void> {
    await this.grantAndPut(extraOps);
  }

  private async grantAndPut(extraOps: IRequestOp[] = []): Promise<void> {
    // Created outside the caller's deadline: the Lease's own keepalive work lives on after the call.
    const lease = this.detached(() => this.client.lease(this.ttlSeconds, { autoKeepAlive: true }));
    this.lease = lease;
    let established = false; // before that, a failure is reported by the rejection, not retried here
    lease.on('lost', () => {
      if (established && lease === this.lease) this.scheduleRetry();
    });
    try {
      const id = await lease.grant();
      const marker = { since: new Date().toISOString(), pid: process.pid };
      await this.client.kv.txn({ success: [putOp(this.aliveKey, marker, id), ...extraOps] });
    } catch (err) {
      // A lease without its key would be kept alive for nothing: let it expire.
      lease.release();
      if (this.lease === lease) this.lease = undefined;
      throw err;
    }
    established = true;
    this.retryDelayMs = 250;
    // stop() ran while this (background) registration was on its way: undo it the same way.
    if (this.stopped) await this.end(lease);
  }

  private scheduleRetry(): void {
    if (this.stopped || this.retryTimer) return;
    const delay = this.retryDelayMs;
    this.retryDelayMs = Math.min(this.retryDelayMs * 2, this.ttlSeconds * 1000);
    const retry = () => {
      this.retryTimer = undefined;
      if (this.stopped) return;
      this.grantAndPut().catch((err: unknown) => {
        this.onBackgroundError(err);
        this.scheduleRetry();
      });
    };
    this.retryTimer = setTimeout(() => this.detached(retry), delay);
    this.retryTimer.unref();
  }

  /**
   * Stops keeping the lease. With `revoke`, etcd drops the alive key at once (the host is gone
   * now); without, it drops it when the TTL runs out, as if the process had died.
   * A failed revoke is not an error: the lease then runs out by itself.
   */
  async stop(revoke: boolean): Promise<void> {
    this.stopped = true;
    this.revokeOnStop = revoke;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const lease = this.lease;
    if (lease) await this.end(lease);
  }

  private async end(lease: Lease): Promise<void> {
    if (this.lease === lease) this.lease = undefined;
    if (this.revokeOnStop) await lease.revoke().catch(() => undefined);
    else lease.release();
  }
}
