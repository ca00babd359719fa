import type { Logger } from '../base/logger.js';
import type { Ec2Api } from '../cloud/ec2.js';
import type { Ec2NetworkApi } from '../cloud/ec2-network.js';
import type { EfsApi } from '../cloud/efs.js';
import type { IdentitySource } from '../cloud/imds.js';
import type { Config } from '../config.js';
import type { FileOps } from '../mount/file-ops.js';
import type { LoopDevices } from '../mount/loop.js';
import type { Mounter } from '../mount/mounter.js';
import type { TcpProbe } from '../net/tcp-probe.js';
import type {
  AttachmentRecord,
  HostRecord,
  MountRecord,
  RemovePolicy,
  VolumeRecord,
} from '../state/store.js';
import type { OptionSpecs, ParsedOptions } from './options.js';

/** Deadlines for every external step, from config. */
export interface Timeouts {
  commandMs: number;
  mountMs: number;
  mkfsMs: number;
  deviceWaitMs: number;
  lockWaitMs: number;
}

/** What a driver may use. Injected by the composition root (src/runtime.ts); no singletons. */
export interface DriverContext {
  host: string;
  log: Logger;
  mounter: Mounter;
  loop: LoopDevices;
  files: FileOps;
  probeTcp: TcpProbe;
  timeouts: Timeouts;
  /** A directory of stowage's own where a driver may mount things for provisioning. */
  stagingDir: string;
  /** Read-only view of the shared state, for decisions that depend on other hosts. */
  state: StateView;
  /** AWS seams; present when a cloud driver is enabled. */
  cloud?: CloudClients;
}

export interface StateView {
  hosts(): Promise<HostRecord[]>;
  mounts(volume: string): Promise<MountRecord[]>;
  /** Hosts whose lease is alive (shared store); undefined when the store has no leases. */
  liveHosts(): Promise<Set<string> | undefined>;
}

export interface CloudClients {
  ec2: Ec2Api;
  /** Present when the efs driver is enabled. */
  efs?: EfsApi;
  /** Subnet and security group look-ups (EC2), to check input before creating anything. */
  network?: Ec2NetworkApi;
  identity: IdentitySource;
}

/** How a volume reaches the host's mount table; the core's mount pipeline handles each kind. */
export type MountSpec =
  | {
      kind: 'block';
      /** Block device (attached) to format if blank and mount. */
      device: string;
      fsType: string;
      mountOptions: string[];
      /**
       * The filesystem stowage itself made on this volume (recorded after its mkfs): the device is
       * mounted as that type without probing it first. Absent: probed (blkid) before mounting.
       */
      madeFilesystem?: string;
    }
  | {
      kind: 'nfs';
      /** `server:/path` */
      source: string;
      server: string;
      /** `efs` goes through the EFS mount helper (TLS, access points). */
      fsType: 'nfs' | 'nfs4' | 'efs';
      mountOptions: string[];
      /** Deadline of the mount command; past it the server is reported as not answering. */
      timeoutMs: number;
    };

export interface ProvisionResult {
  fields: Record<string, unknown>;
  adopted: boolean;
  removePolicy: RemovePolicy;
}

export interface ExpandResult {
  sizeBytes: number;
  /** The volume's fields as they are now (e.g. a recorded size); undefined: unchanged. */
  fields?: Record<string, unknown>;
}

export interface VolumeInput {
  name: string;
  options: Record<string, unknown>;
  givenOptions: string[];
  /** True when an earlier Create of this volume was recorded but not finished. */
  resuming: boolean;
  /** When the volume record was made; stable across a resumed Create. */
  createdAt: string;
  /**
   * What earlier attempts of this Create recorded with `note` ({} on a fresh Create): the only
   * proof that something which exists now was made by this Create and not found there (adopted).
   */
  noted: Readonly<Record<string, unknown>>;
  /**
   * Records in the volume's store record what the driver is about to make (a path, `madeX: true`,
   * a cloud id as soon as it is known), merged into its fields, before it makes it. A Create killed
   * after that point is finished by the next Create (which sees it in `noted`) or undone by Remove
   * (`abandon`); nothing is ever left that no record names.
   */
  note(fields: Record<string, unknown>): Promise<void>;
}

/**
 * What the store records of a volume's attachments, for a driver's attach: the only proof that an
 * attachment the cloud shows was made by stowage (and may be used, or detached) rather than by
 * someone else.
 */
export interface AttachRecords {
  /** The volume's attachment records as they were before this attach, every host's. */
  before: AttachmentRecord[];
  /**
   * Records the name the attachment is about to get in the target host's record, before the cloud
   * call: an attach killed after that call is then known as stowage's by the next one.
   */
  noteDevice(device: string): Promise<void>;
}

/** A host a volume is attached to from elsewhere: its id in the store and its recorded identity. */
export interface AttachTarget {
  host: string;
  identity: Record<string, unknown>;
}

/** A snapshot of a volume, as every door shows it (CSI's Snapshot, `stowage snapshots ls`). */
export interface VolumeSnapshot {
  /** The storage's own id (EBS: snap-…): the handle every door passes back. */
  id: string;
  /** The name it was taken under; undefined for a snapshot stowage did not take. */
  name?: string;
  /** The stowage volume it was taken of; undefined for a snapshot stowage did not take. */
  volume?: string;
  /** The storage's id of the volume it was taken of (EBS: vol-…), which a volume made again anew lacks. */
  sourceId?: string;
  sizeBytes: number;
  createdAt: Date;
  /** complete: a volume can be made from it; failed: the storage gave up on it (it holds nothing). */
  state: 'pending' | 'complete' | 'failed';
}

/**
 * A driver's snapshots (EBS), kept by the storage itself: the name and the source volume travel
 * with the snapshot (EBS tags), so no store record is needed to find one again. The core decides
 * what is stowage's and what a repeated request means (src/core/volume-snapshots.ts).
 */
export interface SnapshotOps {
  /** Starts a snapshot of the volume under `name` (it may be `pending` for a while). */
  create(volume: VolumeRecord, name: string): Promise<VolumeSnapshot>;
  /** Deletes it; one already gone is success. */
  delete(id: string): Promise<void>;
  /** The snapshot with this id, stowage's or not; undefined when there is none. */
  get(id: string): Promise<VolumeSnapshot | undefined>;
  /** Snapshots stowage took, only those of `volume` / under `name` when given. */
  list(filter: { volume?: string; name?: string }): Promise<VolumeSnapshot[]>;
  /** The storage's id of the volume (what a snapshot of it has as `sourceId`). */
  sourceIdOf(volume: VolumeRecord): string | undefined;
}

/** How a driver's volume size is chosen in bytes; see Driver.sizing. */
export interface VolumeSizing {
  /** The option that sets the size (`size`). */
  option: string;
  /** Sizes are whole multiples of this (EBS: 1 GiB); a size in between is rounded up. */
  stepBytes: number;
  /** The option's value for `bytes`, a multiple of stepBytes (EBS: a number of GiB). */
  format(bytes: number): string;
  /** The size parsed options ask for, in bytes; undefined when decided at Create (EBS: from a snapshot). */
  bytesOf(options: Record<string, unknown>): number | undefined;
  /** The smallest size these parsed options allow (a filesystem's or a volume type's floor). */
  minBytes(options: Record<string, unknown>): number;
  /** The largest size any volume may have. */
  maxBytes: number;
  /** The size of a made volume as its record says, in bytes; undefined when it does not say. */
  recordedBytes(volume: VolumeRecord): number | undefined;
}

/** What storage is left for new volumes (Driver.capacity). */
export interface StorageCapacity {
  /** Bytes that new volumes can still be given without promising more than the storage holds. */
  availableBytes: number;
  /** The largest single volume that could be made now. */
  maximumVolumeBytes: number;
  /** The smallest volume the options allow. */
  minimumVolumeBytes: number;
}

export interface DoctorCheck {
  name: string;
  ok: boolean;
  detail: string;
}

export interface Driver {
  readonly name: string;
  /** Docker Capabilities scope: `global` when the same name means the same data on every host. */
  readonly scope: 'local' | 'global';
  /** True when the volume must be attached to a host (as a block device) before it is mounted. */
  readonly needsAttach: boolean;
  /**
   * True for network filesystems: when a plain unmount fails (server gone), the mount is detached
   * lazily instead of staying stuck. Never for block devices, where a busy mount means a user.
   */
  readonly lazyUnmount: boolean;
  /**
   * True when the volume's device is a loop device set up for it alone (local): its last unmount
   * frees the device in the same umount (`umount -d`), one process instead of two, and the
   * driver's detach then finds nothing left to free. Never for a device that outlives the unmount.
   */
  readonly unmountFreesLoop?: boolean;
  readonly optionSpecs: OptionSpecs;

  parseOptions(raw: Record<string, string>): ParsedOptions<Record<string, unknown>>;
  /** Creates (or adopts) the backing storage. Idempotent for the same name and options. */
  provision(volume: VolumeInput): Promise<ProvisionResult>;
  /** Applies the recorded remove policy. Storage that is already gone is success. */
  destroy(volume: VolumeRecord): Promise<void>;
  /**
   * Undoes a Create that did not finish (provision failed, or the daemon died inside it): deletes
   * what that Create made as its `note`s in `volume.fields` say, whatever the remove policy, and
   * never what it found and was adopting. Already gone is success. Called by a failed Create and
   * by Remove of a record still `creating`.
   */
  abandon(volume: VolumeRecord): Promise<void>;
  /**
   * True when attach and detach can run anywhere for any host (a cloud disk: Kubernetes'
   * controller-manager attaches it to a node from another machine). False: only on the host itself.
   */
  readonly attachesRemotely?: boolean;
  /**
   * Attaches the volume to `target` (this host when undefined) and returns the name the attachment
   * is known by: the cloud's device name for EBS, the loop device for local. Idempotent.
   */
  attach?(volume: VolumeRecord, target?: AttachTarget, recorded?: AttachRecords): Promise<{ device: string }>;
  /**
   * Whether this host's attachment, recorded as attached, is still what the record says, checked
   * before it is mounted again (local: the loop device still backs the volume's image, which after
   * a reboot it may not). False: the core attaches afresh. Absent: the record is taken as it is.
   */
  attachmentHolds?(volume: VolumeRecord, attachment: AttachmentRecord): Promise<boolean>;
  /** Waits (bounded) for an attachment's block device to show up on this host; returns its path. */
  localDevice?(volume: VolumeRecord, attachment: AttachmentRecord): Promise<string>;
  /** Inverse of attach (from `target`, this host when undefined); already detached is success. */
  detach?(
    volume: VolumeRecord,
    attachment: AttachmentRecord,
    target?: AttachTarget,
    /** force: the host is gone (its lease expired) and cannot let go by itself. */
    opts?: { force?: boolean },
  ): Promise<void>;
  mountSpec(volume: VolumeRecord, attachment: AttachmentRecord | undefined): MountSpec | Promise<MountSpec>;
  /**
   * Grows the backing storage to at least `newSizeBytes` (rounded up to what the storage allocates)
   * and returns the size it has now, with the driver's fields updated when they record the size.
   * Never shrinks: storage already that big is left as it is. Idempotent. The filesystem on it is
   * grown separately, on the host that uses it (VolumeManager.growFilesystem).
   */
  expand?(volume: VolumeRecord, newSizeBytes: number): Promise<ExpandResult>;
  /** Point-in-time copies of volumes, for drivers whose storage makes them (ebs). */
  readonly snapshots?: SnapshotOps;
  /** Driver facts for Get's Status and `volumes inspect`. */
  describe(volume: VolumeRecord): Record<string, unknown>;
  /**
   * How the size of a new volume is set by a number of bytes (CSI capacity ranges), for drivers
   * whose volumes have a size; absent for shares (nfs, efs), whose size nobody sets.
   */
  readonly sizing?: VolumeSizing;
  /**
   * How much more this host's storage can hold for new volumes with these (parsed) options: what
   * CSI's GetCapacity reports. Only for drivers whose volumes are made from storage of this host.
   */
  capacity?(options: Record<string, unknown>): Promise<StorageCapacity>;
  doctor?(): Promise<DoctorCheck[]>;
  /** Facts about this host the driver needs other hosts to know (e.g. its EC2 instance id). */
  hostIdentity?(): Promise<Record<string, unknown>>;
}

/**
 * Builds a driver from what it may use and the config (checked at start); a driver takes its own
 * section, e.g. `(ctx, config) => new NfsDriver(ctx, config.nfs)`, typed by its catalog entry.
 */
export type DriverFactory = (ctx: DriverContext, config: Config) => Driver;
