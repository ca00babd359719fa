import type { DriverFactory } from '../../src/index.js';
import { EbsDriver } from './driver.js';
import type { EbsConfig } from './options.js';

export const ebsDriver: DriverFactory = (ctx) => new EbsDriver(ctx, ctx.config as unknown as EbsConfig);
