import { isDeepStrictEqual } from 'node:util';
import { StowageError } from '../base/errors.js';
import type { StoreSnapshot } from './etcd-bulk.js';
import type { StateStore } from './store.js';

export interface MigrationReport {
  hosts: number;
  volumes: number;
  attachments: number;
  mounts: number;
}

/** A store that reads and writes everything in a few large requests (etcd: EtcdStore). */
interface BulkStore {
  exportAll(): Promise<StoreSnapshot>;
  importAll(snapshot: StoreSnapshot): Promise<void>;
}

function bulkOf(store: StateStore): BulkStore | undefined {
  const s = store as Partial<BulkStore>;
  return typeof s.exportAll === 'function' && typeof s.importAll === 'function'
    ? (store as unknown as BulkStore)
    : undefined;
}

/**
 * Copies every host, volume, attachment and mount from one store to another (SQLite to etcd when a
 * site grows to several hosts), then reads everything back from the target and compares. Run it
 * with the daemons stopped. Refused, changing nothing, when the source has unfinished operations
 * (their intents belong to the host that started them: start its daemon once to finish them) or
 * when the target already holds volumes. Locks are not copied: nothing may hold one now.
 *
 * An etcd store is read and written in batches (EtcdBulk: up to 128 records a txn, reads paged),
 * so 10,000 volumes take a few hundred requests instead of tens of thousands of round trips.
 */
export async function migrateStore(from: StateStore, to: StateStore): Promise<MigrationReport> {
  const source = await snapshotOf(from);
  const hostIds = new Set(source.hosts.map((h) => h.id));
  for (const x of [...source.attachments, ...source.mounts]) hostIds.add(x.host);
  for (const host of hostIds) {
    const open = await from.listIntents(host);
    if (open.length > 0) {
      throw new StowageError(
        'BUSY',
        `host ${host} has ${open.length} unfinished operation${open.length === 1 ? '' : 's'} (${open
          .map((i) => `${i.op} of ${i.volume}`)
          .join(', ')}); start stowage daemon on it once to finish them, stop it, then migrate`,
      );
    }
  }
  const existing = await to.listVolumes();
  if (existing.length > 0) {
    throw new StowageError(
      'CONFLICT',
      `the target store already holds ${existing.length} volume${existing.length === 1 ? '' : 's'} (${existing
        .slice(0, 5)
        .map((v) => v.name)
        .join(', ')}); migrate into an empty store (for etcd, a new prefix)`,
    );
  }
  const bulk = bulkOf(to);
  if (bulk) await bulk.importAll(source);
  else await writeOneByOne(to, source);
  // Verified: what the target answers is what the source holds.
  const problems = differences(normalized(source), normalized(await snapshotOf(to)));
  if (problems.length > 0) {
    throw new StowageError(
      'INTERNAL',
      `migration copied everything but the target does not read back the same: ${problems.slice(0, 10).join('; ')}`,
    );
  }
  return {
    hosts: source.hosts.length,
    volumes: source.volumes.length,
    attachments: source.attachments.length,
    mounts: source.mounts.length,
  };
}

async function snapshotOf(store: StateStore): Promise<StoreSnapshot> {
  const bulk = bulkOf(store);
  if (bulk) return bulk.exportAll();
  const hosts = await store.listHosts();
  const volumes = await store.listVolumes();
  const snapshot: StoreSnapshot = { hosts, volumes, attachments: [], mounts: [] };
  for (const v of volumes) {
    const state = await store.getVolumeState(v.name);
    snapshot.attachments.push(...state.attachments);
    snapshot.mounts.push(...state.mounts);
  }
  return snapshot;
}

async function writeOneByOne(to: StateStore, s: StoreSnapshot): Promise<void> {
  for (const h of s.hosts) await to.upsertHost(h);
  for (const v of s.volumes) await to.insertVolume(v);
  for (const a of s.attachments) await to.putAttachment(a);
  for (const m of s.mounts) await to.putMount(m);
}

type Keyed = Map<string, unknown>;

/** Each family keyed by what identifies a record in it, so the order of reads does not matter. */
function normalized(s: StoreSnapshot): Record<'hosts' | 'volumes' | 'attachments' | 'mounts', Keyed> {
  const by = <T>(xs: T[], key: (x: T) => string): Keyed => new Map(xs.map((x) => [key(x), x]));
  return {
    hosts: by(s.hosts, (h) => h.id),
    volumes: by(s.volumes, (v) => v.name),
    attachments: by(s.attachments, (a) => `${a.volume} on ${a.host}`),
    mounts: by(s.mounts, (m) => `${m.volume} on ${m.host}`),
  };
}

function differences(want: ReturnType<typeof normalized>, got: ReturnType<typeof normalized>): string[] {
  const problems: string[] = [];
  for (const family of ['hosts', 'volumes', 'attachments', 'mounts'] as const) {
    const w = want[family];
    const g = got[family];
    if (w.size !== g.size)
      problems.push(`the number of ${family} differs (${w.size} copied, ${g.size} read back)`);
    for (const [key, record] of w) {
      if (!isDeepStrictEqual(g.get(key), record)) problems.push(`${family.replace(/s$/, '')} ${key} differs`);
    }
  }
  return problems;
}
