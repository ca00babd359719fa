import * as z from 'zod';
import {
  accessOption,
  boolOption,
  durationOption,
  lazyOptionSpecs,
  listOption,
  mountOptionsOption,
  numericIdOption,
  type OptionSpecs,
  oneOf,
  preemptOption,
  remotePathOption,
  subdirOption,
} from '../../src/index.js';

/** Canonical options of an EFS volume, as recorded at Create. */
export type EfsOptions = {
  fileSystemId?: string;
  basePath: string;
  subdir?: string;
  accessPoint: string; // none | create | fsap-…
  uid?: number;
  gid?: number;
  directoryPerms: string;
  mountTargetIp?: string;
  mountOptions?: string[];
  encryptInTransit: boolean;
  onRemove: 'retain' | 'delete';
  createFileSystem: boolean;
  performanceMode?: 'generalPurpose' | 'maxIO';
  throughputMode?: 'bursting' | 'provisioned' | 'elastic';
  /** MiB/s; given exactly when throughputMode is provisioned. */
  provisionedThroughput?: number;
  encrypted?: boolean;
  kmsKeyId?: string;
  securityGroups?: string[];
  subnets?: string[];
  mountTimeout: string;
};

export const EFS_OPTION_SPECS: OptionSpecs = lazyOptionSpecs({
  fileSystemId: {
    aliases: ['fsid'],
    schema: () =>
      z
        .string()
        .regex(/^fs-[0-9a-f]{8,17}$/, { message: 'must be a file system id such as fs-0123456789abcdef0' }),
    help: 'the EFS file system (default efs.fileSystemId)',
  },
  basePath: {
    schema: () => remotePathOption('must be an absolute path in the file system'),
    help: 'directory under which volumes get their subdirectories (default /)',
  },
  subdir: {
    schema: () => subdirOption,
    help: 'subdirectory under basePath; default the volume name',
  },
  accessPoint: {
    schema: () =>
      z
        .string()
        .regex(/^(none|create|fsap-[0-9a-f]{8,17})$/, { message: 'must be none, create or an fsap-… id' }),
    help: 'none (subdirectory isolation), create (an access point per volume) or an existing fsap-… id',
  },
  uid: { schema: () => numericIdOption, help: 'owner uid of the directory (and the access point user)' },
  gid: { schema: () => numericIdOption, help: 'owner gid of the directory (and the access point user)' },
  directoryPerms: {
    schema: () => z.string().regex(/^0?[0-7]{3,4}$/, { message: 'must be an octal mode such as 0755' }),
    help: 'mode of the created directory',
  },
  mountTargetIp: {
    schema: () => z.string().regex(/^\d{1,3}(\.\d{1,3}){3}$/, { message: 'must be an IPv4 address' }),
    help: "mount through this address instead of the mount target in this host's zone",
  },
  mountOptions: {
    aliases: ['mntOptions'],
    schema: () => mountOptionsOption,
    help: 'comma-separated mount options, merged over the defaults',
  },
  encryptInTransit: {
    aliases: ['tls'],
    schema: () => boolOption,
    help: 'mount with TLS through the EFS mount helper',
  },
  onRemove: {
    schema: () => oneOf(['retain', 'delete']),
    help: 'retain (default) or delete the data on Remove',
  },
  createFileSystem: { schema: () => boolOption, help: 'create a file system for this volume' },
  performanceMode: {
    schema: () => oneOf(['generalPurpose', 'maxIO']),
    help: 'new file system: performance mode',
  },
  throughputMode: {
    schema: () => oneOf(['bursting', 'provisioned', 'elastic']),
    help: 'new file system: throughput mode',
  },
  provisionedThroughput: {
    // EFS takes a fractional MiB/s; the upper bound depends on the Region and the account's quota,
    // so it is left to EFS (its refusal comes back as INVALID_ARGUMENT naming the value).
    schema: () =>
      z
        .string()
        .regex(/^\d{1,6}(\.\d{1,3})?$/, { message: 'must be a number of MiB/s such as 128' })
        .transform(Number)
        .refine((n) => n >= 1, { message: 'must be at least 1 MiB/s' }),
    help: 'new file system: MiB/s with throughputMode=provisioned (required there, refused otherwise)',
  },
  encrypted: { schema: () => boolOption, help: 'new file system: encrypt at rest' },
  kmsKeyId: { schema: () => z.string().min(1).max(2048), help: 'new file system: KMS key' },
  securityGroups: {
    schema: () => listOption(/^sg-[0-9a-f]{8,17}$/, 'a security group id'),
    help: 'new mount targets: security groups',
  },
  subnets: {
    schema: () => listOption(/^subnet-[0-9a-f]{8,17}$/, 'a subnet id'),
    help: "new mount targets: subnets (default this host's)",
  },
  mountTimeout: {
    schema: () => durationOption(600_000, '10m'),
    help: 'how long a mount may wait for the server',
  },
  access: accessOption,
  preempt: preemptOption,
});

export const FS_CREATION_OPTIONS = [
  'performanceMode',
  'throughputMode',
  'provisionedThroughput',
  'encrypted',
  'kmsKeyId',
  'securityGroups',
  'subnets',
];
