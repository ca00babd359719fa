import type { DriverFactory } from '../../src/index.js';
import { NfsDriver } from './driver.js';
import type { NfsConfig } from './options.js';

export const nfsDriver: DriverFactory = (ctx) => new NfsDriver(ctx, ctx.config as unknown as NfsConfig);
