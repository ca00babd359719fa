import type { DriverFactory } from '../../src/index.js';
import { LocalDriver } from './driver.js';
import type { LocalConfig } from './options.js';

export const localDriver: DriverFactory = (ctx) => new LocalDriver(ctx, ctx.config as unknown as LocalConfig);
