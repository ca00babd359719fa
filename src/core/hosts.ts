import { hostname } from 'node:os';
import { StowageError } from '../base/errors.js';
import type { Logger } from '../base/logger.js';
import type { NodeLookup } from '../cloud/node-lookup.js';
import type { HostRecord, StateStore } from '../state/store.js';
import type { AttachTarget, Driver } from './driver.js';

/**
 * Records this host in the hosts registry with what other hosts need to know about it (EBS: its
 * instance id and zone, so a controller elsewhere can attach to it and a volume attached here can
 * be traced back to this host). Merges with what is recorded: the daemon and the flexvolume
 * executable of one host may each know a part.
 */
export async function registerHost(
  store: StateStore,
  host: string,
  drivers: readonly Driver[],
  log: Logger,
  extra: Record<string, unknown> = {},
  /** With a shared store: keep the host alive with a lease of this TTL while the process runs. */
  opts: { leaseTtlSeconds?: number } = {},
): Promise<HostRecord> {
  const recorded = (await store.listHosts()).find((h) => h.id === host);
  let identity: Record<string, unknown> = { ...recorded?.identity, hostname: hostname(), ...extra };
  for (const driver of drivers) {
    try {
      identity = { ...identity, ...((await driver.hostIdentity?.()) ?? {}) };
    } catch (err) {
      log.warn({ driver: driver.name, err: (err as Error).message }, 'host identity unavailable');
    }
  }
  const leased = opts.leaseTtlSeconds !== undefined && store.keepHostAlive !== undefined;
  // Recorded so that other hosts know this one keeps a lease: only such a host can be "gone".
  if (leased) identity = { ...identity, leaseTtlSeconds: opts.leaseTtlSeconds };
  const record = { id: host, identity, lastSeen: new Date().toISOString() };
  if (leased && opts.leaseTtlSeconds !== undefined && store.keepHostAlive) {
    await store.keepHostAlive(record, opts.leaseTtlSeconds, (err) =>
      log.warn({ err: err.message }, 'host lease: renewing failed; retrying'),
    );
  } else {
    await store.upsertHost(record);
  }
  return record;
}

/**
 * The host behind a Kubernetes node name. Nodes register themselves; a node is matched by its
 * host id, hostname or private DNS name. An unregistered node is looked up in the cloud (on AWS:
 * EC2, by the private DNS name kubelet uses), so the first attach to a fresh node works too.
 */
export async function resolveNode(
  store: StateStore,
  nodeName: string,
  nodes?: NodeLookup,
): Promise<AttachTarget> {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$/.test(nodeName)) {
    throw new StowageError('INVALID_ARGUMENT', `invalid node name ${JSON.stringify(nodeName)}`);
  }
  const hosts = await store.listHosts();
  const known =
    hosts.find((h) => h.id === nodeName) ??
    hosts.find((h) => [h.identity.hostname, h.identity.privateDnsName].includes(nodeName));
  if (known) return { host: known.id, identity: known.identity };
  const found = nodes ? await nodes.find(nodeName) : undefined;
  if (found) {
    const byInstance = hosts.find((h) => h.identity.instanceId === found.instanceId);
    return { host: byInstance?.id ?? nodeName, identity: { ...byInstance?.identity, ...found.identity } };
  }
  throw new StowageError(
    'NOT_FOUND',
    `node ${nodeName} is not a registered stowage host${nodes ? ` and ${nodes.missing}` : ''}; ` +
      'run the stowage DaemonSet (or `stowage hosts register`) on it',
  );
}

/** This host's entry in the hosts registry and the lookup of other nodes: what the doors use. */
export class HostDirectory {
  constructor(
    private readonly d: {
      store: StateStore;
      host: string;
      drivers: () => readonly Driver[];
      log: Logger;
      nodes?: NodeLookup;
    },
  ) {}

  /** Records this host (see registerHost). */
  register(
    extra: Record<string, unknown> = {},
    opts: { leaseTtlSeconds?: number } = {},
  ): Promise<HostRecord> {
    return registerHost(this.d.store, this.d.host, this.d.drivers(), this.d.log, extra, opts);
  }

  /** Records this host unless it is recorded already (a node-side call before any daemon ran). */
  async ensureRegistered(): Promise<void> {
    if (!(await this.d.store.listHosts()).some((h) => h.id === this.d.host)) await this.register();
  }

  resolveNode(nodeName: string): Promise<AttachTarget> {
    return resolveNode(this.d.store, nodeName, this.d.nodes);
  }
}

/**
 * Hosts that kept a lease in the shared store and no longer do: their daemon or machine died, or
 * they lost the network. A host that never held a lease (a store without leases, a node running
 * only the flexvolume executable) is never gone: nothing proves it stopped.
 */
export async function goneHosts(store: StateStore): Promise<Map<string, HostRecord>> {
  const gone = new Map<string, HostRecord>();
  if (!store.liveHosts) return gone;
  const live = await store.liveHosts();
  for (const h of await store.listHosts()) {
    if (h.identity.leaseTtlSeconds !== undefined && !live.has(h.id)) gone.set(h.id, h);
  }
  return gone;
}
