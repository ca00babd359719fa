import type { AttachmentRecord, MountRecord, VolumeRecord, VolumeState, VolumeSummary } from './store.js';

/** The key families (first segment under the prefix) the read cache keeps. */
export const CACHED_FAMILIES = ['volumes', 'mounts', 'attachments'] as const;
export type CachedFamily = (typeof CACHED_FAMILIES)[number];

type Filter = { driver?: string };

/**
 * The in-memory copy of the volumes, mounts and attachments under a store's prefix, fed key by
 * key (from a load or from watch events) and read by the cached store. Pure: no etcd, no timers.
 *
 * Memory: a volume is kept as its JSON text plus one small frozen summary (name, driver,
 * created-at), not as a parsed object graph: at 100,000 volumes that is a few objects per volume
 * instead of a dozen, which keeps the heap and the garbage collector's marking small. Get parses
 * the one record it answers (a few µs). Mounts and attachments, far fewer, are kept parsed and
 * deep-frozen, so answers hand out the stored objects and a caller that tries to change one fails.
 * Listing summaries is the one large read (Docker's List, asked often): its answer is kept, the
 * same frozen array, until a volume or a mount changes, so the Docker route serializes it once
 * per change (see src/docker/routes.ts).
 */
export class CacheTables {
  private readonly volumes = new Map<string, { json: string; summary: VolumeSummary }>();
  /** volume -> host -> record, and the same records host -> volume (a host's own, at no scan). */
  private readonly mounts = new Map<string, Map<string, MountRecord>>();
  private readonly attachments = new Map<string, Map<string, AttachmentRecord>>();
  private readonly mountsByHost = new Map<string, Map<string, MountRecord>>();
  private readonly attachmentsByHost = new Map<string, Map<string, AttachmentRecord>>();
  /** Volume names in order; dropped when a volume comes or goes (not when one changes). */
  private sortedNames: string[] | undefined;
  /** Per host and filter: what listSummaries answers. Per filter: the host-less lists they copy. */
  private readonly summaries = new Map<string, readonly VolumeSummary[]>();
  private readonly bases = new Map<string, readonly VolumeSummary[]>();

  /**
   * Applies one key under the prefix (`rest` is the key without `<prefix>/`): its JSON value, or
   * undefined when it was deleted. Keys of other families are ignored; returns whether it applied.
   */
  apply(rest: string, value: string | undefined): boolean {
    const segments = rest.split('/');
    const family = segments[0];
    if (family === 'volumes' && segments.length === 2) {
      const name = decodeURIComponent(segments[1]!);
      const had = this.volumes.has(name);
      if (value === undefined) this.volumes.delete(name);
      else {
        const v = JSON.parse(value) as VolumeRecord;
        const summary = Object.freeze({ name, driver: v.driver, createdAt: v.createdAt });
        this.volumes.set(name, { json: value, summary });
      }
      if (had !== this.volumes.has(name)) this.sortedNames = undefined;
      this.bases.clear();
      this.changed(true);
      return true;
    }
    if ((family === 'mounts' || family === 'attachments') && segments.length === 3) {
      const volume = decodeURIComponent(segments[1]!);
      const host = decodeURIComponent(segments[2]!);
      const [byVolume, byHost] = (
        family === 'mounts' ? [this.mounts, this.mountsByHost] : [this.attachments, this.attachmentsByHost]
      ) as [Map<string, Map<string, unknown>>, Map<string, Map<string, unknown>>];
      const record = value === undefined ? undefined : deepFreeze(JSON.parse(value) as unknown);
      setNested(byVolume, volume, host, record);
      setNested(byHost, host, volume, record);
      this.changed(family === 'mounts'); // the List shows mountpoints, not attachments
      return true;
    }
    return false;
  }

  volumeState(name: string): VolumeState {
    const state: VolumeState = {
      mounts: valuesByKey(this.mounts.get(name)),
      attachments: valuesByKey(this.attachments.get(name)),
    };
    const v = this.volumes.get(name);
    if (v) state.volume = JSON.parse(v.json) as VolumeRecord;
    return state;
  }

  /** `host`'s mounts, ordered by volume (what listMountsByHost answers). */
  mountsOn(host: string): MountRecord[] {
    return valuesByKey(this.mountsByHost.get(host));
  }

  attachmentsOn(host: string): AttachmentRecord[] {
    return valuesByKey(this.attachmentsByHost.get(host));
  }

  listVolumes(filter: Filter = {}): VolumeRecord[] {
    const out: VolumeRecord[] = [];
    for (const name of this.names()) {
      const v = this.volumes.get(name)!;
      if (!filter.driver || v.summary.driver === filter.driver) out.push(JSON.parse(v.json) as VolumeRecord);
    }
    return out;
  }

  /** Name, driver, created-at and `host`'s mountpoint; the same frozen array until something changes. */
  listSummaries(host: string, filter: Filter = {}): VolumeSummary[] {
    const key = `${host}\0${filter.driver ?? ''}`;
    let list = this.summaries.get(key);
    if (!list) {
      // A copy of the shared (host-less) list with this host's mounted volumes patched in: one
      // allocation and a few hundred lookups, not a lookup per volume and a growing array.
      const base = this.baseSummaries(filter);
      const out = base.slice();
      for (const m of this.mountsByHost.get(host)?.values() ?? []) {
        if (m.state !== 'mounted') continue;
        const at = indexOfName(base, m.volume);
        if (at >= 0) out[at] = Object.freeze({ ...base[at]!, mountpoint: m.mountpoint });
      }
      list = Object.freeze(out);
      this.summaries.set(key, list);
    }
    return list as VolumeSummary[];
  }

  /** Every volume's summary (or the driver's), by name, no mountpoints; kept until a volume changes. */
  private baseSummaries(filter: Filter): readonly VolumeSummary[] {
    const key = filter.driver ?? '';
    let base = this.bases.get(key);
    if (!base) {
      const out: VolumeSummary[] = [];
      for (const name of this.names()) {
        const { summary } = this.volumes.get(name)!;
        if (!filter.driver || summary.driver === filter.driver) out.push(summary);
      }
      base = Object.freeze(out);
      this.bases.set(key, base);
    }
    return base;
  }

  get volumeCount(): number {
    return this.volumes.size;
  }

  private names(): string[] {
    this.sortedNames ??= [...this.volumes.keys()].sort(cmp);
    return this.sortedNames;
  }

  private changed(listed: boolean): void {
    if (listed) this.summaries.clear();
  }
}

function setNested(table: Map<string, Map<string, unknown>>, outer: string, inner: string, value: unknown) {
  let rows = table.get(outer);
  if (value === undefined) {
    rows?.delete(inner);
    if (rows?.size === 0) table.delete(outer);
    return;
  }
  if (!rows) {
    rows = new Map();
    table.set(outer, rows);
  }
  rows.set(inner, value);
}

/** The rows of one volume, ordered by host (the order the direct reads give). */
function valuesByKey<T>(rows: Map<string, T> | undefined): T[] {
  if (!rows) return [];
  return [...rows.keys()].sort(cmp).map((k) => rows.get(k)!);
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Where `name` is in `list` (ordered by name, as names() orders), or -1. */
function indexOfName(list: readonly VolumeSummary[], name: string): number {
  let lo = 0;
  let hi = list.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const c = cmp(list[mid]!.name, name);
    if (c === 0) return mid;
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
