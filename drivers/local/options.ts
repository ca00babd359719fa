import * as z from 'zod';
import { formatSize, lazyOptionSpecs, type OptionSpecs, oneOf, parseSize } from '../../src/index.js';

export type LocalOptions = {
  /** Canonical size text (e.g. "64M"), so recorded options read as the user wrote them. */
  size: string;
  fsType: 'ext4' | 'xfs';
  onRemove?: 'delete' | 'retain';
};

// mkfs.xfs refuses filesystems below 300 MiB; ext4 needs a few MiB for its journal.
export const MIN_BYTES = { ext4: 8 * 1024 ** 2, xfs: 300 * 1024 ** 2 } as const;

/** Built on first use, as every option schema here (lazyOptionSpecs). */
const sizeSchema = () =>
  z.string().transform((text, ctx) => {
    try {
      return formatSize(parseSize(text));
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  });

export const LOCAL_OPTION_SPECS: OptionSpecs = lazyOptionSpecs({
  size: { schema: sizeSchema, help: 'image size: GiB as a bare number (10) or with a unit (64M, 1G)' },
  fsType: { schema: () => oneOf(['ext4', 'xfs']), help: 'filesystem made at first mount: ext4 or xfs' },
  onRemove: {
    schema: () => oneOf(['delete', 'retain']),
    help: 'what Remove does with the image: delete (default) or retain (adopted images: retain)',
  },
});
