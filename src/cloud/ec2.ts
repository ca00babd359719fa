import type {
  DescribeInstancesCommandInput,
  DescribeSnapshotsCommandInput,
  EC2Client,
  Snapshot,
  Volume,
  VolumeModification,
  VolumeType,
} from '@aws-sdk/client-ec2';
import { isStowageError, StowageError } from '../base/errors.js';
import { type AwsClientOptions, observeCalls, sdkClientConfig } from './client-options.js';
import { fromAwsError } from './errors.js';

export type VolumeState = 'creating' | 'available' | 'in-use' | 'deleting' | 'deleted' | 'error';
export type AttachState = 'attaching' | 'attached' | 'detaching' | 'detached' | 'busy';

export interface Ec2Volume {
  id: string;
  sizeGiB: number;
  state: VolumeState;
  availabilityZone: string;
  type: string;
  snapshotId?: string;
  tags: Record<string, string>;
  attachments: { instanceId: string; device: string; state: AttachState }[];
}

export type ModificationState = 'modifying' | 'optimizing' | 'completed' | 'failed';

/** The latest ModifyVolume of a volume. Its new size is usable from `optimizing` on. */
export interface Ec2VolumeModification {
  volumeId: string;
  state: ModificationState;
  targetSizeGiB: number;
  originalSizeGiB: number;
  statusMessage?: string;
}

export interface Ec2Instance {
  id: string;
  availabilityZone: string;
  privateDnsName?: string;
  /** Device names already used on the instance (root disk included). */
  devices: string[];
}

export type SnapshotState = 'pending' | 'completed' | 'error' | 'recoverable' | 'recovering';

/** An EBS snapshot as DescribeSnapshots and CreateSnapshot show it. */
export interface Ec2Snapshot {
  id: string;
  /** The EC2 volume it was taken of. */
  volumeId: string;
  state: SnapshotState;
  sizeGiB: number;
  startTime: Date;
  /** EC2's `NN%`. */
  progress: string;
  description: string;
  tags: Record<string, string>;
}

/** Which snapshots of this account DescribeSnapshots answers: every condition given must hold. */
export interface SnapshotQuery {
  ids?: string[];
  /** Tags with these values. */
  tags?: Record<string, string>;
  /** Tags present, whatever their value. */
  tagKeys?: string[];
}

export interface CreateVolumeInput {
  clientToken: string;
  sizeGiB?: number;
  type: string;
  iops?: number;
  throughput?: number;
  encrypted?: boolean;
  kmsKeyId?: string;
  snapshotId?: string;
  availabilityZone: string;
  tags: Record<string, string>;
}

/** The narrow EC2 seam the EBS driver uses. Errors are StowageErrors; NotFound on delete/detach is success. */
export interface Ec2Api {
  createVolume(input: CreateVolumeInput): Promise<Ec2Volume>;
  describeVolume(id: string): Promise<Ec2Volume | undefined>;
  /** The volumes (not deleted) carrying tag `key`=`value`; EC2 may not list a just-made one yet. */
  findVolumesByTag(key: string, value: string): Promise<Ec2Volume[]>;
  deleteVolume(id: string): Promise<void>;
  /**
   * Asks EC2 to attach (it answers `attaching`). A device name the instance already uses is refused
   * as INVALID_ARGUMENT with details.reason = DEVICE_NAME_IN_USE, so callers need not read EC2's words.
   */
  attachVolume(id: string, instanceId: string, device: string): Promise<void>;
  detachVolume(id: string, instanceId: string, opts?: { force?: boolean }): Promise<void>;
  describeInstance(id: string): Promise<Ec2Instance | undefined>;
  findInstanceByPrivateDnsName(name: string): Promise<Ec2Instance | undefined>;
  describeSnapshot(id: string): Promise<{ id: string; sizeGiB: number } | undefined>;
  findSnapshotByTag(key: string, value: string): Promise<{ id: string; sizeGiB: number } | undefined>;
  /** Starts a snapshot of the volume (CreateSnapshot): it answers `pending` at once. */
  createSnapshot(volumeId: string, description: string, tags: Record<string, string>): Promise<Ec2Snapshot>;
  /** Deletes a snapshot; one already gone is success. */
  deleteSnapshot(id: string): Promise<void>;
  /**
   * This account's snapshots that match, every page of DescribeSnapshots (bounded); unknown ids
   * are left out rather than failing the whole query.
   */
  findSnapshots(query: SnapshotQuery): Promise<Ec2Snapshot[]>;
  /** Starts growing a volume to `sizeGiB` (ModifyVolume); EC2 refuses a smaller size. */
  modifyVolume(id: string, sizeGiB: number): Promise<Ec2VolumeModification>;
  /** The volume's latest modification (DescribeVolumesModifications); undefined when it never had one. */
  describeVolumeModification(id: string): Promise<Ec2VolumeModification | undefined>;
}

export type SdkEc2Options = AwsClientOptions;

/** A bound on DescribeSnapshots pages of 1000 (a deadline in calls, not in time). */
const MAX_SNAPSHOT_PAGES = 20;

/** details.reason of AttachVolume's refusal of a device name the instance already uses. */
export const DEVICE_NAME_IN_USE = 'device-name-in-use';

type Sdk = typeof import('@aws-sdk/client-ec2');

export class SdkEc2 implements Ec2Api {
  private sdk: Promise<{ sdk: Sdk; client: EC2Client }> | undefined;

  constructor(private readonly opts: SdkEc2Options) {}

  /**
   * The SDK is loaded on first use, not at start-up: it costs ~35 MB of memory and most of a
   * second of CPU, which a daemon without the ebs driver, or a CLI call, must not pay.
   */
  private load(): Promise<{ sdk: Sdk; client: EC2Client }> {
    this.sdk ??= import('@aws-sdk/client-ec2').then((sdk) => ({
      sdk,
      client: observeCalls(new sdk.EC2Client(sdkClientConfig(this.opts)), 'ec2', this.opts.observe),
    }));
    return this.sdk;
  }

  async createVolume(i: CreateVolumeInput): Promise<Ec2Volume> {
    const out = await this.call(`CreateVolume in ${i.availabilityZone}`, (c) =>
      c.client.send(
        new c.sdk.CreateVolumeCommand({
          ClientToken: i.clientToken,
          AvailabilityZone: i.availabilityZone,
          VolumeType: i.type as VolumeType,
          ...(i.sizeGiB !== undefined ? { Size: i.sizeGiB } : {}),
          ...(i.iops !== undefined ? { Iops: i.iops } : {}),
          ...(i.throughput !== undefined ? { Throughput: i.throughput } : {}),
          ...(i.encrypted !== undefined ? { Encrypted: i.encrypted } : {}),
          ...(i.kmsKeyId !== undefined ? { KmsKeyId: i.kmsKeyId } : {}),
          ...(i.snapshotId !== undefined ? { SnapshotId: i.snapshotId } : {}),
          TagSpecifications: [
            { ResourceType: 'volume', Tags: Object.entries(i.tags).map(([Key, Value]) => ({ Key, Value })) },
          ],
        }),
      ),
    );
    return toVolume(out);
  }

  async describeVolume(id: string): Promise<Ec2Volume | undefined> {
    try {
      const out = await this.call(`DescribeVolumes ${id}`, (c) =>
        c.client.send(new c.sdk.DescribeVolumesCommand({ VolumeIds: [id] })),
      );
      const v = out.Volumes?.[0];
      return v ? toVolume(v) : undefined;
    } catch (err) {
      if (isStowageError(err, 'NOT_FOUND')) return undefined;
      throw err;
    }
  }

  async findVolumesByTag(key: string, value: string): Promise<Ec2Volume[]> {
    const out = await this.call(`DescribeVolumes tag:${key}=${value}`, (c) =>
      c.client.send(new c.sdk.DescribeVolumesCommand({ Filters: [{ Name: `tag:${key}`, Values: [value] }] })),
    );
    return (out.Volumes ?? []).map(toVolume);
  }

  async deleteVolume(id: string): Promise<void> {
    try {
      await this.call(`DeleteVolume ${id}`, (c) =>
        c.client.send(new c.sdk.DeleteVolumeCommand({ VolumeId: id })),
      );
    } catch (err) {
      if (!isStowageError(err, 'NOT_FOUND')) throw err;
    }
  }

  async attachVolume(id: string, instanceId: string, device: string): Promise<void> {
    try {
      await this.call(`AttachVolume ${id} to ${instanceId} as ${device}`, (c) =>
        c.client.send(
          new c.sdk.AttachVolumeCommand({ VolumeId: id, InstanceId: instanceId, Device: device }),
        ),
      );
    } catch (err) {
      throw deviceNameInUse(err) ?? err;
    }
  }

  async detachVolume(id: string, instanceId: string, opts: { force?: boolean } = {}): Promise<void> {
    try {
      await this.call(`DetachVolume ${id} from ${instanceId}`, (c) =>
        c.client.send(
          new c.sdk.DetachVolumeCommand({ VolumeId: id, InstanceId: instanceId, Force: opts.force ?? false }),
        ),
      );
    } catch (err) {
      // Not found, or not attached (IncorrectState): already detached.
      if (!isStowageError(err, 'NOT_FOUND') && !isStowageError(err, 'CONFLICT')) throw err;
    }
  }

  async describeInstance(id: string): Promise<Ec2Instance | undefined> {
    try {
      return await this.findInstance(`DescribeInstances ${id}`, { InstanceIds: [id] });
    } catch (err) {
      if (isStowageError(err, 'NOT_FOUND')) return undefined;
      throw err;
    }
  }

  findInstanceByPrivateDnsName(name: string): Promise<Ec2Instance | undefined> {
    return this.findInstance(`DescribeInstances private-dns-name=${name}`, {
      Filters: [{ Name: 'private-dns-name', Values: [name] }],
    });
  }

  async describeSnapshot(id: string): Promise<{ id: string; sizeGiB: number } | undefined> {
    try {
      return await this.findSnapshot(`DescribeSnapshots ${id}`, { SnapshotIds: [id] });
    } catch (err) {
      if (isStowageError(err, 'NOT_FOUND')) return undefined;
      throw err;
    }
  }

  findSnapshotByTag(key: string, value: string): Promise<{ id: string; sizeGiB: number } | undefined> {
    return this.findSnapshot(`DescribeSnapshots tag:${key}=${value}`, {
      // Only this account's: a stranger's public snapshot with the same tag must never be picked.
      OwnerIds: ['self'],
      Filters: [{ Name: `tag:${key}`, Values: [value] }],
    });
  }

  async createSnapshot(
    volumeId: string,
    description: string,
    tags: Record<string, string>,
  ): Promise<Ec2Snapshot> {
    const out = await this.call(`CreateSnapshot of ${volumeId}`, (c) =>
      c.client.send(
        new c.sdk.CreateSnapshotCommand({
          VolumeId: volumeId,
          Description: description,
          TagSpecifications: [
            { ResourceType: 'snapshot', Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) },
          ],
        }),
      ),
    );
    return toSnapshot(out);
  }

  async deleteSnapshot(id: string): Promise<void> {
    try {
      await this.call(`DeleteSnapshot ${id}`, (c) =>
        c.client.send(new c.sdk.DeleteSnapshotCommand({ SnapshotId: id })),
      );
    } catch (err) {
      if (!isStowageError(err, 'NOT_FOUND')) throw err;
    }
  }

  async findSnapshots(query: SnapshotQuery): Promise<Ec2Snapshot[]> {
    const filters = [
      ...Object.entries(query.tags ?? {}).map(([k, v]) => ({ Name: `tag:${k}`, Values: [literal(v)] })),
      ...(query.tagKeys?.length ? [{ Name: 'tag-key', Values: query.tagKeys }] : []),
    ];
    const input: DescribeSnapshotsCommandInput = {
      // Only this account's: never a stranger's public snapshot that happens to carry our tags.
      OwnerIds: ['self'],
      ...(filters.length > 0 ? { Filters: filters } : {}),
    };
    if (query.ids?.length) return this.snapshotsById(query.ids, input);
    const found: Ec2Snapshot[] = [];
    let token: string | undefined;
    for (let page = 0; page < MAX_SNAPSHOT_PAGES; page++) {
      const out = await this.call('DescribeSnapshots', (c) =>
        c.client.send(
          new c.sdk.DescribeSnapshotsCommand({
            ...input,
            MaxResults: 1000,
            ...(token ? { NextToken: token } : {}),
          }),
        ),
      );
      found.push(...(out.Snapshots ?? []).map(toSnapshot));
      token = out.NextToken;
      if (!token) return found;
    }
    throw new StowageError(
      'UNAVAILABLE',
      `DescribeSnapshots still had more pages after ${MAX_SNAPSHOT_PAGES * 1000} snapshots; narrow the query`,
    );
  }

  /** By id: EC2 fails the whole call for one unknown id, so an unknown one is asked again alone. */
  private async snapshotsById(ids: string[], input: DescribeSnapshotsCommandInput): Promise<Ec2Snapshot[]> {
    try {
      const out = await this.call(`DescribeSnapshots ${ids.join(',')}`, (c) =>
        c.client.send(new c.sdk.DescribeSnapshotsCommand({ ...input, SnapshotIds: ids })),
      );
      return (out.Snapshots ?? []).map(toSnapshot);
    } catch (err) {
      const unknown =
        isStowageError(err, 'NOT_FOUND') ||
        (isStowageError(err) && err.details.awsError === 'InvalidSnapshotID.Malformed');
      if (!unknown) throw err;
      if (ids.length === 1) return [];
      const each = await Promise.all(ids.map((id) => this.snapshotsById([id], input)));
      return each.flat();
    }
  }

  async modifyVolume(id: string, sizeGiB: number): Promise<Ec2VolumeModification> {
    const out = await this.call(`ModifyVolume ${id} to ${sizeGiB} GiB`, (c) =>
      c.client.send(new c.sdk.ModifyVolumeCommand({ VolumeId: id, Size: sizeGiB })),
    );
    return toModification(out.VolumeModification ?? {}, id);
  }

  async describeVolumeModification(id: string): Promise<Ec2VolumeModification | undefined> {
    try {
      const out = await this.call(`DescribeVolumesModifications ${id}`, (c) =>
        c.client.send(new c.sdk.DescribeVolumesModificationsCommand({ VolumeIds: [id] })),
      );
      // EC2 answers only the latest modification of each volume; newest first in case of several.
      const mods = [...(out.VolumesModifications ?? [])].sort(
        (a, b) => (b.StartTime?.getTime() ?? 0) - (a.StartTime?.getTime() ?? 0),
      );
      return mods[0] ? toModification(mods[0], id) : undefined;
    } catch (err) {
      // The volume was never modified (a volume that is gone stays an error).
      if (isStowageError(err) && err.details.awsError === 'InvalidVolumeModification.NotFound')
        return undefined;
      throw err;
    }
  }

  private async findInstance(
    doing: string,
    input: DescribeInstancesCommandInput,
  ): Promise<Ec2Instance | undefined> {
    const out = await this.call(doing, (c) => c.client.send(new c.sdk.DescribeInstancesCommand(input)));
    const inst = out.Reservations?.flatMap((r) => r.Instances ?? [])[0];
    if (!inst?.InstanceId) return undefined;
    const found: Ec2Instance = {
      id: inst.InstanceId,
      availabilityZone: inst.Placement?.AvailabilityZone ?? '',
      devices: (inst.BlockDeviceMappings ?? []).map((b) => b.DeviceName ?? '').filter(Boolean),
    };
    if (inst.PrivateDnsName) found.privateDnsName = inst.PrivateDnsName;
    return found;
  }

  private async findSnapshot(
    doing: string,
    input: DescribeSnapshotsCommandInput,
  ): Promise<{ id: string; sizeGiB: number } | undefined> {
    const out = await this.call(doing, (c) => c.client.send(new c.sdk.DescribeSnapshotsCommand(input)));
    // Newest first when a tag matches several snapshots.
    const snaps = [...(out.Snapshots ?? [])].sort(
      (a, b) => (b.StartTime?.getTime() ?? 0) - (a.StartTime?.getTime() ?? 0),
    );
    const s = snaps[0];
    return s?.SnapshotId ? { id: s.SnapshotId, sizeGiB: s.VolumeSize ?? 0 } : undefined;
  }

  private async call<T>(doing: string, fn: (c: { sdk: Sdk; client: EC2Client }) => Promise<T>): Promise<T> {
    try {
      return await fn(await this.load());
    } catch (err) {
      throw fromAwsError(err, doing);
    }
  }
}

/**
 * EC2 has no error name of its own for a taken device name: it says InvalidParameterValue, "...
 * Attachment point /dev/xvdf is already in use". Recognized here, the one place that reads AWS's
 * words, and marked so the caller can pick another name.
 */
function deviceNameInUse(err: unknown): StowageError | undefined {
  if (!isStowageError(err, 'INVALID_ARGUMENT') || err.details.awsError !== 'InvalidParameterValue')
    return undefined;
  if (!/in use|already/i.test(err.message)) return undefined;
  return new StowageError(err.code, err.message, {
    cause: err.cause,
    retryable: err.retryable,
    details: { ...err.details, reason: DEVICE_NAME_IN_USE },
  });
}

/** A filter value that matches only itself: EC2 reads `*` and `?` as wildcards, `\\` as an escape. */
function literal(value: string): string {
  return value.replace(/[\\*?]/g, (c) => `\\${c}`);
}

function toSnapshot(s: Snapshot): Ec2Snapshot {
  return {
    id: s.SnapshotId ?? '',
    volumeId: s.VolumeId ?? '',
    state: (s.State ?? 'pending') as SnapshotState,
    sizeGiB: s.VolumeSize ?? 0,
    startTime: s.StartTime ?? new Date(0),
    progress: s.Progress ?? '',
    description: s.Description ?? '',
    tags: Object.fromEntries((s.Tags ?? []).map((t) => [t.Key ?? '', t.Value ?? ''])),
  };
}

function toModification(m: VolumeModification, id: string): Ec2VolumeModification {
  const out: Ec2VolumeModification = {
    volumeId: m.VolumeId ?? id,
    state: (m.ModificationState ?? 'modifying') as ModificationState,
    targetSizeGiB: m.TargetSize ?? 0,
    originalSizeGiB: m.OriginalSize ?? 0,
  };
  if (m.StatusMessage) out.statusMessage = m.StatusMessage;
  return out;
}

function toVolume(v: Volume): Ec2Volume {
  const out: Ec2Volume = {
    id: v.VolumeId ?? '',
    sizeGiB: v.Size ?? 0,
    state: (v.State ?? 'error') as VolumeState,
    availabilityZone: v.AvailabilityZone ?? '',
    type: v.VolumeType ?? '',
    tags: Object.fromEntries((v.Tags ?? []).map((t) => [t.Key ?? '', t.Value ?? ''])),
    attachments: (v.Attachments ?? []).map((a) => ({
      instanceId: a.InstanceId ?? '',
      device: a.Device ?? '',
      state: (a.State ?? 'attaching') as AttachState,
    })),
  };
  if (v.SnapshotId) out.snapshotId = v.SnapshotId;
  return out;
}
