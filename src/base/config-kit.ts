import { isAbsolute } from 'node:path';
import * as z from 'zod';
import { parseDuration } from './duration.js';
import { parseSize } from './size.js';

/**
 * The validators every part of the config schema shares: src/config.ts for its own keys, and each
 * driver's section (drivers/<name>/config.ts), which receives them as a `ConfigKit` argument.
 */

export const absPath = z.string().refine(isAbsolute, { message: 'must be an absolute path' });

/** Milliseconds: a whole, positive number of at most a day. */
export const ms = z
  .number()
  .int()
  .positive()
  .max(24 * 3600 * 1000);

/**
 * Sizes and durations stay text in the config (drivers parse them, and volumes override them),
 * but are checked here with the same parsers, so a typo stops the daemon at start with the key
 * named instead of failing the first volume that uses it.
 */
export const size = z.string().superRefine(parsesWith(parseSize));
export const duration = z.string().superRefine(parsesWith(parseDuration));

/** A file mode in octal, such as 0755. */
export const octalMode = z
  .string()
  .regex(/^0?[0-7]{3,4}$/, { message: 'must be an octal mode such as 0755' });

function parsesWith(parse: (text: string) => number) {
  return (text: string, ctx: z.RefinementCtx) => {
    try {
      parse(text);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
    }
  };
}

/**
 * What a driver's section schema is built with. It is handed in rather than imported because the
 * driver catalog imports every driver's section, and the flexvolume executable imports the catalog
 * at every `init` probe: loading zod costs about 27 ms there (measured, bundled), a third of node's
 * own start, for a call that checks no config. So a driver's config.ts imports zod's types only.
 */
export const configKit = {
  // The builders the sections use, not zod's namespace object: handing that object around would
  // make the bundler keep all of zod (450 KB) in the chunk the driver option schemas share with the
  // config, which a store-opening flexvolume call loads; with property reads only, it keeps ~90 KB.
  z: { object: z.object, string: z.string, number: z.number, enum: z.enum, array: z.array, url: z.url },
  absPath,
  ms,
  size,
  duration,
  octalMode,
};
export type ConfigKit = typeof configKit;
