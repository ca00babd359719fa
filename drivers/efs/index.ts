import type { DriverFactory } from '../../src/index.js';
import { EfsDriver } from './driver.js';

export const efsDriver: DriverFactory = (ctx, config) => new EfsDriver(ctx, config.efs);
