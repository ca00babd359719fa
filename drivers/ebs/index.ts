import type { DriverFactory } from '../../src/index.js';
import { EbsDriver } from './driver.js';

export const ebsDriver: DriverFactory = (ctx, config) => new EbsDriver(ctx, config.ebs);
