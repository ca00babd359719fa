import type { DriverRegistry } from '../src/index.js';
import { ebsDriver } from './ebs/index.js';
import { efsDriver } from './efs/index.js';
import { localDriver } from './local/index.js';
import { nfsDriver } from './nfs/index.js';

/** Registers every driver that ships with stowage. */
export function registerBuiltins(registry: DriverRegistry): void {
  registry.register('local', localDriver);
  registry.register('nfs', nfsDriver);
  registry.register('ebs', ebsDriver);
  registry.register('efs', efsDriver);
}
