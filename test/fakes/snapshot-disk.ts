import type { StowageError } from '../../src/base/errors.js';
import type { Driver, SnapshotOps, VolumeSnapshot } from '../../src/core/driver.js';
import { parseOptions } from '../../src/core/options.js';
import type { VolumeRecord } from '../../src/state/store.js';

const GiB = 1024 ** 3;

/**
 * Snapshots kept in memory, as a storage that records the name and volume with each snapshot
 * would (EBS's tags): what the core and the CSI door see through SnapshotOps, with the storage's
 * own snapshots (not stowage's) and injected failures. Ids are `snap-` and 17 hex digits, in
 * creation order; each snapshot is a second younger than the one before, so the order is known.
 */
export class MemorySnapshots implements SnapshotOps {
  readonly all = new Map<string, VolumeSnapshot>();
  /** Calls of each operation, in order. */
  readonly calls: string[] = [];
  private next = 1;
  private readonly failures: { op: keyof SnapshotOps; error: StowageError }[] = [];
  private readonly epoch = Date.parse('2026-01-01T00:00:00Z');

  /** The next call of `op` fails with `error` (e.g. UNAVAILABLE for a throttled cloud). */
  failNext(op: keyof SnapshotOps, error: StowageError): void {
    this.failures.push({ op, error });
  }

  /** The storage lists a new snapshot only after `calls` more list calls (eventual consistency). */
  listLag = 0;
  private readonly hiddenFor = new Map<string, number>();

  /** A snapshot the storage has that stowage did not take. */
  addForeign(): string {
    const id = this.newId();
    this.all.set(id, { id, sizeBytes: GiB, createdAt: this.nextTime(), state: 'complete' });
    return id;
  }

  /** The snapshot reaches `complete` (or `failed`). */
  finish(id: string, state: 'complete' | 'failed' = 'complete'): void {
    const s = this.all.get(id);
    if (!s) throw new Error(`no snapshot ${id}`);
    s.state = state;
  }

  async create(volume: VolumeRecord, name: string): Promise<VolumeSnapshot> {
    this.enter('create');
    const id = this.newId();
    const s: VolumeSnapshot = {
      id,
      name,
      volume: volume.name,
      sourceId: this.sourceIdOf(volume),
      sizeBytes: Number(volume.fields.sizeGiB ?? 1) * GiB,
      createdAt: this.nextTime(),
      state: 'pending',
    };
    this.all.set(id, s);
    if (this.listLag > 0) this.hiddenFor.set(id, this.listLag);
    return { ...s };
  }

  sourceIdOf(volume: VolumeRecord): string {
    return String(volume.fields.diskId);
  }

  async delete(id: string): Promise<void> {
    this.enter('delete');
    this.all.delete(id);
  }

  async get(id: string): Promise<VolumeSnapshot | undefined> {
    this.enter('get');
    const s = this.all.get(id);
    return s ? { ...s } : undefined;
  }

  async list(filter: { volume?: string; name?: string }): Promise<VolumeSnapshot[]> {
    this.enter('list');
    const hidden = new Set<string>();
    for (const [id, left] of this.hiddenFor) {
      hidden.add(id);
      if (left <= 1) this.hiddenFor.delete(id);
      else this.hiddenFor.set(id, left - 1);
    }
    return [...this.all.values()]
      .filter((s) => s.name !== undefined && !hidden.has(s.id))
      .filter((s) => filter.volume === undefined || s.volume === filter.volume)
      .filter((s) => filter.name === undefined || s.name === filter.name)
      .reverse() // the storage's order is not the core's: the core sorts
      .map((s) => ({ ...s }));
  }

  private enter(op: keyof SnapshotOps): void {
    this.calls.push(op);
    const i = this.failures.findIndex((f) => f.op === op);
    if (i >= 0) {
      const [f] = this.failures.splice(i, 1);
      throw f?.error;
    }
  }

  private newId(): string {
    return `snap-${(this.next++).toString(16).padStart(17, '0')}`;
  }

  private nextTime(): Date {
    return new Date(this.epoch + this.next * 1000);
  }
}

/** A driver with disks that need no attach or mount in these tests, and snapshots in memory. */
export function snapshotDisk(name = 'snapdisk'): { driver: Driver; snapshots: MemorySnapshots } {
  const snapshots = new MemorySnapshots();
  let disks = 0;
  const driver: Driver = {
    name,
    scope: 'global',
    needsAttach: false,
    lazyUnmount: false,
    optionSpecs: {},
    snapshots,
    parseOptions: (raw) => parseOptions<Record<string, unknown>>(name, {}, raw, {}),
    // Each Create makes a new disk: a volume removed and made again has another id.
    provision: async (v) => ({
      fields: { sizeGiB: 2, diskId: `disk-${v.name}-${++disks}` },
      adopted: false,
      removePolicy: 'delete',
    }),
    destroy: async () => undefined,
    abandon: async () => undefined,
    mountSpec: () => {
      throw new Error('not mounted in these tests');
    },
    describe: () => ({}),
  };
  return { driver, snapshots };
}
