import type { DriverRegistry } from '../src/index.js';
import { localDriver } from './local/index.js';

/** Registers every driver that ships with stowage. */
export function registerBuiltins(registry: DriverRegistry): void {
  registry.register('local', localDriver);
}
