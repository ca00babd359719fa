import { configSection, type SectionValue } from '../../src/base/config-section.js';

/** Every EBS volume type: the config's default and a volume's `type` option choose among these. */
export const VOLUME_TYPES = ['gp3', 'gp2', 'io1', 'io2', 'st1', 'sc1', 'standard'] as const;

/** The `ebs` section of the config (region and this host's identity are in `aws`). */
export const ebsConfig = configSection({
  schema: ({ z, absPath, duration }) =>
    z
      .object({
        /** EC2 API endpoint; default the SDK's (which honours AWS_ENDPOINT_URL_EC2). */
        endpoint: z.url().optional(),
        defaultSizeGiB: z.number().int().min(1).max(65536).default(10),
        defaultType: z.enum(VOLUME_TYPES).default('gp3'),
        defaultFsType: z.enum(['ext4', 'xfs']).default('ext4'),
        createTimeout: duration.default('5m'),
        attachTimeout: duration.default('2m'),
        /** How long a size change (ModifyVolume) may take to reach `optimizing`. */
        modifyTimeout: duration.default('2m'),
        /** Where attached devices appear; only tests and unusual hosts change these. */
        devDir: absPath.default('/dev'),
        byIdDir: absPath.default('/dev/disk/by-id'),
        sysBlockDir: absPath.default('/sys/block'),
      })
      .strict()
      .prefault({}),
});

export type EbsConfig = SectionValue<typeof ebsConfig>;
