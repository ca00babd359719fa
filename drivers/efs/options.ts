import { z } from 'zod';
import { type OptionSpecs, oneOf, parseDuration } from '../../src/index.js';

/** Canonical options of an EFS volume, as recorded at Create. */
export interface EfsOptions {
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
  encrypted?: boolean;
  kmsKeyId?: string;
  securityGroups?: string[];
  subnets?: string[];
  mountTimeout: string;
}

export interface EfsConfig {
  endpoint?: string;
  fileSystemId?: string;
  mountOptions: string[];
  onRemove: 'retain' | 'delete';
  mountTimeout: string;
  createTimeout: string;
}

const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const MOUNT_OPTION = /^[A-Za-z0-9_]+(=[A-Za-z0-9_.:/@+-]+)?$/;

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'], { message: 'must be true or false' })
  .transform((v) => ['true', '1', 'yes'].includes(v));
const list = (re: RegExp, what: string) =>
  z.union([z.string(), z.array(z.string())]).transform((v, ctx) => {
    const items = (Array.isArray(v) ? v : v.split(',')).map((x) => x.trim()).filter(Boolean);
    const bad = items.find((x) => !re.test(x));
    if (bad !== undefined) {
      ctx.addIssue({ code: 'custom', message: `${JSON.stringify(bad)} is not ${what}` });
      return z.NEVER;
    }
    return items;
  });
const id = z
  .string()
  .regex(/^\d{1,10}$/, { message: 'must be a numeric id' })
  .transform(Number);

export const EFS_OPTION_SPECS: OptionSpecs = {
  fileSystemId: {
    aliases: ['fsid'],
    schema: z
      .string()
      .regex(/^fs-[0-9a-f]{8,17}$/, { message: 'must be a file system id such as fs-0123456789abcdef0' }),
    help: 'the EFS file system (default efs.fileSystemId)',
  },
  basePath: {
    schema: z
      .string()
      .regex(/^\/[A-Za-z0-9_.@+/-]*$/, { message: 'must be an absolute path in the file system' })
      .refine((p) => !p.split('/').includes('..'), { message: 'must not contain ".."' })
      .transform((p) => (p.length > 1 ? p.replace(/\/+$/, '') : p)),
    help: 'directory under which volumes get their subdirectories (default /)',
  },
  subdir: {
    schema: z
      .string()
      .transform((s) => s.replace(/^\/+|\/+$/g, ''))
      .refine(
        (s) =>
          s.split('/').every((seg) => SEGMENT.test(seg.replaceAll('{name}', 'n')) && !seg.includes('..')),
        {
          message: 'must be a relative path of names ([A-Za-z0-9_.-], no ".."), may use {name}',
        },
      ),
    help: 'subdirectory under basePath; default the volume name',
  },
  accessPoint: {
    schema: z
      .string()
      .regex(/^(none|create|fsap-[0-9a-f]{8,17})$/, { message: 'must be none, create or an fsap-… id' }),
    help: 'none (subdirectory isolation), create (an access point per volume) or an existing fsap-… id',
  },
  uid: { schema: id, help: 'owner uid of the directory (and the access point user)' },
  gid: { schema: id, help: 'owner gid of the directory (and the access point user)' },
  directoryPerms: {
    schema: z.string().regex(/^0?[0-7]{3,4}$/, { message: 'must be an octal mode such as 0755' }),
    help: 'mode of the created directory',
  },
  mountTargetIp: {
    schema: z.string().regex(/^\d{1,3}(\.\d{1,3}){3}$/, { message: 'must be an IPv4 address' }),
    help: "mount through this address instead of the mount target in this host's zone",
  },
  mountOptions: {
    aliases: ['mntOptions'],
    schema: list(MOUNT_OPTION, 'a mount option (key or key=value)'),
    help: 'comma-separated mount options, merged over the defaults',
  },
  encryptInTransit: { aliases: ['tls'], schema: bool, help: 'mount with TLS through the EFS mount helper' },
  onRemove: { schema: oneOf(['retain', 'delete']), help: 'retain (default) or delete the data on Remove' },
  createFileSystem: { schema: bool, help: 'create a file system for this volume' },
  performanceMode: { schema: oneOf(['generalPurpose', 'maxIO']), help: 'new file system: performance mode' },
  throughputMode: {
    schema: oneOf(['bursting', 'provisioned', 'elastic']),
    help: 'new file system: throughput mode',
  },
  encrypted: { schema: bool, help: 'new file system: encrypt at rest' },
  kmsKeyId: { schema: z.string().min(1).max(2048), help: 'new file system: KMS key' },
  securityGroups: {
    schema: list(/^sg-[0-9a-f]{8,17}$/, 'a security group id'),
    help: 'new mount targets: security groups',
  },
  subnets: {
    schema: list(/^subnet-[0-9a-f]{8,17}$/, 'a subnet id'),
    help: "new mount targets: subnets (default this host's)",
  },
  mountTimeout: {
    schema: z.string().refine(
      (t) => {
        try {
          return parseDuration(t) <= 600_000;
        } catch {
          return false;
        }
      },
      { message: 'must be a duration up to 10m such as 30s' },
    ),
    help: 'how long a mount may wait for the server',
  },
};

export const FS_CREATION_OPTIONS = [
  'performanceMode',
  'throughputMode',
  'encrypted',
  'kmsKeyId',
  'securityGroups',
  'subnets',
];
