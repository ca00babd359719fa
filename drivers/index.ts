import { type DriverRegistry, StowageError } from '../src/index.js';
import { DRIVER_NAMES, loadDriver } from './catalog.js';

/**
 * Registers every driver that ships with stowage, loaded through the catalog's loaders (the one
 * list of drivers): the daemon and the CLI load all of them at start, the flexvolume executable
 * only its own.
 */
export async function registerBuiltins(registry: DriverRegistry): Promise<void> {
  const loaded = await Promise.all(DRIVER_NAMES.map(async (name) => [name, await loadDriver(name)] as const));
  for (const [name, factory] of loaded) {
    if (!factory) throw new StowageError('INTERNAL', `the catalog lists driver ${name} but loads nothing`);
    registry.register(name, factory);
  }
}
