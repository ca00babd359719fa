import * as z from 'zod';
import { boolOption, lazyOptionSpecs, type OptionSpecs, oneOf } from '../../src/index.js';
import { VOLUME_TYPES } from './config.js';

export type EbsVolumeType = (typeof VOLUME_TYPES)[number];

/** Canonical options of an EBS volume, as recorded at Create. */
export type EbsOptions = {
  size?: number;
  type: EbsVolumeType;
  iops?: number;
  throughput?: number;
  encrypted?: boolean;
  kmsKeyId?: string;
  snapshotId?: string;
  snapshotTag?: string;
  snapshotTagName: string;
  volumeId?: string;
  availabilityZone?: string;
  fsType: 'ext4' | 'xfs';
  tags?: Record<string, string>;
  onRemove?: 'delete' | 'retain';
  preempt: boolean;
};

const int = (min: number, max: number, what: string) =>
  z
    .string()
    .regex(/^\d+$/, { message: `must be a whole number of ${what}` })
    .transform(Number)
    .refine((n) => n >= min && n <= max, { message: `must be between ${min} and ${max} ${what}` });

/** Built on first use, as every option schema here (lazyOptionSpecs). */
const tags = () =>
  z.string().transform((text, ctx) => {
    const out: Record<string, string> = {};
    for (const pair of text.split(',').filter(Boolean)) {
      const eq = pair.indexOf('=');
      const key = eq > 0 ? pair.slice(0, eq).trim() : '';
      if (!key || key.length > 128 || key.toLowerCase().startsWith('aws:') || key.startsWith('stowage.io/')) {
        ctx.addIssue({
          code: 'custom',
          message: `tag ${JSON.stringify(pair)} must be key=value (no aws: or stowage.io/ keys)`,
        });
        return z.NEVER;
      }
      out[key] = pair.slice(eq + 1).trim();
    }
    return out;
  });

/** The largest size the size option takes, in GiB. */
export const MAX_SIZE_GIB = 65536;

export const EBS_OPTION_SPECS: OptionSpecs = lazyOptionSpecs({
  size: { schema: () => int(1, MAX_SIZE_GIB, 'GiB'), help: 'size in GiB' },
  type: {
    aliases: ['volumeType'],
    schema: () => oneOf(VOLUME_TYPES),
    help: 'EBS volume type, gp3 by default',
  },
  iops: { schema: () => int(100, 256000, 'IOPS'), help: 'provisioned IOPS (gp3, io1, io2)' },
  throughput: { schema: () => int(125, 2000, 'MiB/s'), help: 'throughput in MiB/s (gp3)' },
  encrypted: { schema: () => boolOption, help: 'encrypt the volume' },
  kmsKeyId: { schema: () => z.string().min(1).max(2048), help: 'KMS key for encryption' },
  snapshotId: {
    aliases: ['snapshotID'],
    schema: () =>
      z
        .string()
        .regex(/^snap-[0-9a-f]{8,17}$/, { message: 'must be a snapshot id such as snap-0123456789abcdef0' }),
    help: 'create from this snapshot',
  },
  snapshotTag: {
    schema: () => z.string().min(1).max(256),
    help: 'create from the newest snapshot whose tag has this value',
  },
  snapshotTagName: {
    schema: () => z.string().min(1).max(128),
    help: 'the tag snapshotTag looks at (default Name)',
  },
  volumeId: {
    aliases: ['volumeID'],
    schema: () =>
      z
        .string()
        .regex(/^vol-[0-9a-f]{8,17}$/, { message: 'must be a volume id such as vol-0123456789abcdef0' }),
    help: 'adopt this existing volume',
  },
  availabilityZone: {
    schema: () =>
      z
        .string()
        // Regular zones (us-east-1a) and Local Zones (us-west-2-lax-1a).
        .regex(/^[a-z]{2}(-[a-z0-9]+)*-\d+[a-z]$/, {
          message: 'must be an availability zone such as us-east-1a',
        }),
    help: "availability zone (default this host's)",
  },
  fsType: {
    schema: () => oneOf(['ext4', 'xfs']),
    help: 'filesystem made at first mount when the volume is blank',
  },
  tags: { schema: tags, help: 'extra tags: k=v,k2=v2' },
  onRemove: {
    schema: () => oneOf(['delete', 'retain']),
    help: 'delete (default for created volumes) or retain (default for adopted ones)',
  },
  preempt: {
    schema: () => boolOption,
    help: 'take the volume from another host when the store shows no mounts there (force-detach)',
  },
});
