import type { DriverFactory } from '../../src/index.js';
import { EfsDriver } from './driver.js';
import type { EfsConfig } from './options.js';

export const efsDriver: DriverFactory = (ctx) => new EfsDriver(ctx, ctx.config as unknown as EfsConfig);
