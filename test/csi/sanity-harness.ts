import { z } from 'zod';
import { TOPOLOGY_HOST, TOPOLOGY_ZONE } from '../../csi/context.js';
import { driverTraits } from '../../drivers/catalog.js';
import { registerBuiltins } from '../../drivers/index.js';
import type { AttachTarget, Driver, ExpandResult, VolumeSizing } from '../../src/core/driver.js';
import { type OptionSpec, oneOf, parseOptions } from '../../src/core/options.js';
import { DriverRegistry } from '../../src/core/registry.js';
import type { VolumeRecord } from '../../src/state/store.js';
import type { FakeDisk, FakeMounter } from '../fakes/fake-mounter.js';
import { type MemorySnapshots, snapshotDisk } from '../fakes/snapshot-disk.js';
import { createTestRuntime, TEST_HOST, type TestRuntime } from '../helpers/runtime.js';
import type { CsiClient } from './client.js';
import { serveTestPlugin } from './test-plugin.js';

/**
 * What csi-sanity talks to: one plugin serving Identity, Controller and Node (`--mode all`) on a
 * unix socket, built by the real composition of the door (csiServices) over a test runtime (the
 * real VolumeManager and SQLite store, the fake kernel). `local` is the real local driver;
 * `disk` is an attachable, zonal block driver with ebs's traits over a fake cloud disk, for the
 * cases csi-sanity runs only when PUBLISH_UNPUBLISH_VOLUME is advertised; `snapdisk` is a block
 * driver with ebs's traits whose snapshots are kept in memory (test/fakes/snapshot-disk.ts), for
 * the snapshot cases.
 */
export type SanityDriver = 'local' | 'disk' | 'snapdisk';

export interface SanityPlugin {
  driver: SanityDriver;
  t: TestRuntime;
  client: CsiClient;
  /** kubelet's directory: csi-sanity's --csi.mountdir and --csi.stagingdir are inside it. */
  kubelet: string;
  disk?: FakeAttachableDisk;
  snapshots?: MemorySnapshots;
  close(): Promise<void>;
}

export const GiB = 1024 ** 3;
const DEVICE = '/dev/xvdba';

/** The fake disk's options: a size in GiB, a zone, a filesystem. */
export const DISK_OPTION_SPECS: Record<string, OptionSpec> = {
  size: { schema: z.string().regex(/^\d+$/).transform(Number), help: 'GiB' },
  availabilityZone: { schema: z.string(), help: 'zone' },
  fsType: { schema: oneOf(['ext4', 'xfs']), help: 'fs' },
};

/** A block volume in whole GiB that must be attached to a host before it is mounted there. */
export class FakeAttachableDisk implements Partial<Driver> {
  readonly name = 'disk';
  readonly scope = 'global' as const;
  readonly needsAttach = true;
  readonly attachesRemotely = true;
  readonly lazyUnmount = false;
  readonly optionSpecs: Record<string, OptionSpec> = DISK_OPTION_SPECS;
  /** Attached disks: volume name → host. */
  readonly attached = new Map<string, string>();
  /** The fake kernel of this host (set once the runtime exists): an attached disk appears in it. */
  mounter?: FakeMounter;
  /** Each volume's disk contents, kept across detach and attach (the filesystem made at stage). */
  private readonly disks = new Map<string, FakeDisk>();
  readonly sizing: VolumeSizing = {
    option: 'size',
    stepBytes: GiB,
    format: (b) => String(b / GiB),
    bytesOf: (o) => (o.size as number) * GiB,
    minBytes: () => GiB,
    maxBytes: 16 * GiB,
    recordedBytes: (v) => (v.fields.sizeGiB as number) * GiB,
  };
  /** Defaults of options a request leaves out. */
  protected readonly defaults: Record<string, string> = { size: '10', fsType: 'ext4' };
  parseOptions(raw: Record<string, string>) {
    return parseOptions('disk', this.optionSpecs, raw, this.defaults);
  }
  async provision(v: { options: Record<string, unknown> }) {
    const zone = (v.options.availabilityZone as string | undefined) ?? 'zone-a';
    return {
      fields: { sizeGiB: v.options.size, availabilityZone: zone },
      adopted: false,
      removePolicy: 'delete' as const,
    };
  }
  async destroy() {}
  async abandon() {}
  async attach(vol: { name: string; fields?: Record<string, unknown> }, target?: AttachTarget) {
    const host = target?.host ?? TEST_HOST;
    this.attached.set(vol.name, host);
    if (host === TEST_HOST) this.mounter?.addBlockDevice(DEVICE, this.contentsOf(vol));
    return { device: DEVICE };
  }
  /** The size of the filesystem on the volume's disk (what the node's growFilesystem made it). */
  fsBytes(volume: string): number | undefined {
    return this.disks.get(volume)?.fsSizeBytes;
  }
  private contentsOf(vol: { name: string; fields?: Record<string, unknown> }): FakeDisk {
    let contents = this.disks.get(vol.name);
    if (!contents) {
      contents = { fsType: null, sizeBytes: Number(vol.fields?.sizeGiB ?? 1) * GiB };
      this.disks.set(vol.name, contents);
    }
    return contents;
  }
  async detach(vol: { name: string }, _a: unknown, target?: AttachTarget) {
    this.attached.delete(vol.name);
    if ((target?.host ?? TEST_HOST) === TEST_HOST) this.mounter?.removeBlockDevice(DEVICE);
  }
  async expand(vol: VolumeRecord, bytes: number): Promise<ExpandResult> {
    const size = Math.max(vol.fields.sizeGiB as number, Math.ceil(bytes / GiB));
    // The cloud grows the device; the filesystem on it stays as it was until the node grows it.
    this.contentsOf(vol).sizeBytes = size * GiB;
    return { sizeBytes: size * GiB, fields: { ...vol.fields, sizeGiB: size } };
  }
  mountSpec() {
    return { kind: 'block' as const, device: DEVICE, fsType: 'ext4', mountOptions: [] };
  }
  describe(vol: VolumeRecord) {
    return { availabilityZone: vol.fields.availabilityZone };
  }
}

export async function startSanityPlugin(driver: SanityDriver): Promise<SanityPlugin> {
  let t: TestRuntime;
  let disk: FakeAttachableDisk | undefined;
  let snapshots: MemorySnapshots | undefined;
  if (driver === 'disk') {
    const fake = new FakeAttachableDisk();
    disk = fake;
    const registry = new DriverRegistry();
    await registerBuiltins(registry);
    registry.register('disk', () => fake as unknown as Driver);
    t = await createTestRuntime({ registry, flags: { drivers: ['local', 'disk'] } });
    fake.mounter = t.mounter;
  } else if (driver === 'snapdisk') {
    const snapdisk = snapshotDisk();
    snapshots = snapdisk.snapshots;
    const registry = new DriverRegistry();
    await registerBuiltins(registry);
    // ebs restores a volume from a snapshot named in its `snapshotId` option; so does this one.
    const optionSpecs = {
      snapshotId: { schema: z.string().regex(/^snap-[0-9a-f]{17}$/), help: 'the snapshot to restore' },
    };
    const restoring: Driver = {
      ...snapdisk.driver,
      optionSpecs,
      parseOptions: (raw) => parseOptions<Record<string, unknown>>('snapdisk', optionSpecs, raw, {}),
    };
    registry.register('snapdisk', () => restoring);
    t = await createTestRuntime({ registry, flags: { drivers: ['local', 'snapdisk'] } });
  } else {
    t = await createTestRuntime();
  }
  // The node registered itself, as `stowage csi --mode node|all` does at start: ControllerPublish
  // finds the node id NodeGetInfo reports.
  await t.store.upsertHost({ id: TEST_HOST, identity: { hostname: 'test-host.example' }, lastSeen: 'now' });
  const plugin = await serveTestPlugin(
    t,
    {
      driver,
      traits: driverTraits(driver === 'local' ? 'local' : 'ebs')!,
      nodeTopology: async (): Promise<Record<string, string>> =>
        driver === 'local' ? { [TOPOLOGY_HOST]: TEST_HOST } : { [TOPOLOGY_ZONE]: 'zone-a' },
    },
    'all',
  );
  return {
    driver,
    t,
    ...plugin,
    ...(disk ? { disk } : {}),
    ...(snapshots ? { snapshots } : {}),
  };
}
