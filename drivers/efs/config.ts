import { configSection, type SectionValue } from '../../src/base/config-section.js';

/** What AWS recommends for EFS over NFSv4.1. */
export const EFS_MOUNT_DEFAULTS = [
  'nfsvers=4.1',
  'rsize=1048576',
  'wsize=1048576',
  'hard',
  'timeo=600',
  'retrans=2',
  'noresvport',
];

/** The `efs` section of the config. */
export const efsConfig = configSection({
  schema: ({ z, duration }) =>
    z
      .object({
        /** EFS API endpoint; default the SDK's (which honours AWS_ENDPOINT_URL_EFS). */
        endpoint: z.url().optional(),
        /** Default file system for volumes that name none. */
        fileSystemId: z
          .string()
          .regex(/^fs-[0-9a-f]{8,17}$/, { message: 'must be a file system id' })
          .optional(),
        mountOptions: z.array(z.string().min(1)).default(EFS_MOUNT_DEFAULTS),
        onRemove: z.enum(['retain', 'delete']).default('retain'),
        mountTimeout: duration.default('30s'),
        createTimeout: duration.default('10m'),
      })
      .strict()
      .prefault({}),
});

export type EfsConfig = SectionValue<typeof efsConfig>;
