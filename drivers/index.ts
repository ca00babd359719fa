import type { DriverFactory, DriverRegistry } from '../src/index.js';
import { DRIVER_NAMES, type DriverName } from './catalog.js';
import { ebsDriver } from './ebs/index.js';
import { efsDriver } from './efs/index.js';
import { localDriver } from './local/index.js';
import { nfsDriver } from './nfs/index.js';

/**
 * The daemon loads every driver up front (the flexvolume executable loads one, through the
 * catalog's lazy loaders). The type ties this table to the catalog: a driver added there and
 * forgotten here does not compile.
 */
const FACTORIES: Record<DriverName, DriverFactory> = {
  local: localDriver,
  nfs: nfsDriver,
  efs: efsDriver,
  ebs: ebsDriver,
};

/** Registers every driver that ships with stowage. */
export function registerBuiltins(registry: DriverRegistry): void {
  for (const name of DRIVER_NAMES) registry.register(name, FACTORIES[name]);
}
