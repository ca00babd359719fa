// The public surface for drivers/: types, errors, option helpers. Drivers import nothing else.

export { formatMs, pollUntil } from './base/backoff.js';
export { parseDuration } from './base/duration.js';
export { type ErrorCode, isStowageError, StowageError } from './base/errors.js';
export { isNfsVersionOption, mergeMountOptions } from './base/mount-options.js';
export { formatSize, parseSize } from './base/size.js';
export {
  type CreateVolumeInput,
  DEVICE_NAME_IN_USE,
  type Ec2Api,
  type Ec2Instance,
  type Ec2Snapshot,
  type Ec2Volume,
  type SnapshotQuery,
} from './cloud/ec2.js';
export type { Ec2NetworkApi } from './cloud/ec2-network.js';
export type { EfsAccessPoint, EfsApi, EfsFileSystem, EfsMountTarget } from './cloud/efs.js';
export type { IdentitySource, InstanceIdentity } from './cloud/imds.js';
export type { Config } from './config.js';
export { CRASH_POINTS, type CrashPoint, crashPoint } from './core/crash-points.js';
export type {
  AttachRecords,
  AttachTarget,
  CloudClients,
  DoctorCheck,
  Driver,
  DriverContext,
  DriverFactory,
  ExpandResult,
  MountSpec,
  ProvisionResult,
  SnapshotOps,
  StateView,
  StorageCapacity,
  Timeouts,
  VolumeInput,
  VolumeSizing,
  VolumeSnapshot,
} from './core/driver.js';
export { blockMountSpec } from './core/mount-pipeline.js';
export {
  type DirSpec,
  provisionDir,
  removeDir,
  type ShareLocation,
  subdirFor,
  withShare,
} from './core/nfs-share.js';
export {
  accessOption,
  boolOption,
  durationOption,
  listOption,
  mountOptionsOption,
  numericIdOption,
  preemptOption,
  remotePathOption,
  subdirOption,
} from './core/option-schemas.js';
export {
  type LazyOptionSpec,
  lazyOptionSpecs,
  type OptionSpecs,
  oneOf,
  type ParsedOptions,
  parseOptions,
  recordedOptions,
} from './core/options.js';
export type { DriverRegistry } from './core/registry.js';
export { type Holder, refuseTakeOverUnlessAllowed } from './core/takeover.js';
export type { AttachmentRecord, HostRecord, MountRecord, RemovePolicy, VolumeRecord } from './state/store.js';
export { totalRefs } from './state/store.js';
