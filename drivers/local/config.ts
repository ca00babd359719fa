import { join } from 'node:path';
import { configSection, type SectionValue } from '../../src/base/config-section.js';

/** The `local` section of the config. */
export const localConfig = configSection({
  schema: ({ z, absPath, size }) =>
    z
      .object({
        /** Where the image files live (default <dataDir>/local). */
        imageDir: absPath.optional(),
        defaultSize: size.default('1G'),
        maxSize: size.default('1T'),
        defaultFsType: z.enum(['ext4', 'xfs']).default('ext4'),
      })
      .strict()
      .prefault({}),
  resolve: (local, { dataDir }) => ({ ...local, imageDir: local.imageDir ?? join(dataDir, 'local') }),
});

export type LocalConfig = SectionValue<typeof localConfig>;
