import type { DriverFactory } from '../../src/index.js';
import { LocalDriver } from './driver.js';

export const localDriver: DriverFactory = (ctx, config) => new LocalDriver(ctx, config.local);
