// The public surface for drivers/: types, errors, option helpers. Drivers import nothing else.

export { formatMs } from './core/backoff.js';
export type {
  DoctorCheck,
  Driver,
  DriverContext,
  DriverFactory,
  MountSpec,
  ProvisionResult,
  Timeouts,
  VolumeInput,
} from './core/driver.js';
export { parseDuration } from './core/duration.js';
export { type ErrorCode, isStowageError, StowageError } from './core/errors.js';
export { type OptionSpecs, oneOf, type ParsedOptions, parseOptions } from './core/options.js';
export type { DriverRegistry } from './core/registry.js';
export { formatSize, parseSize } from './core/size.js';
export type { AttachmentRecord, RemovePolicy, VolumeRecord } from './state/store.js';
