import type { DriverFactory } from '../../src/index.js';
import { NfsDriver } from './driver.js';

export const nfsDriver: DriverFactory = (ctx, config) => new NfsDriver(ctx, config.nfs);
