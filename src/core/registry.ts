import { StowageError } from '../base/errors.js';
import type { Driver, DriverFactory } from './driver.js';

/** Driver name -> factory. Drivers are built once per runtime, only when enabled. */
export class DriverRegistry {
  private readonly factories = new Map<string, DriverFactory>();
  private readonly built = new Map<string, Driver>();

  register(name: string, factory: DriverFactory): void {
    if (this.factories.has(name)) throw new Error(`driver ${name} registered twice`);
    this.factories.set(name, factory);
  }

  known(): string[] {
    return [...this.factories.keys()].sort();
  }

  /**
   * Builds the enabled drivers, each with `build` (the composition root calls the factory with the
   * driver's context and the config); an unknown name in the list is a configuration error.
   */
  enable(names: readonly string[], build: (name: string, factory: DriverFactory) => Driver): void {
    for (const name of names) {
      const factory = this.factories.get(name);
      if (!factory) {
        throw new StowageError(
          'UNKNOWN_DRIVER',
          `unknown driver ${JSON.stringify(name)}; known drivers: ${this.known().join(', ')}`,
        );
      }
      this.built.set(name, build(name, factory));
    }
  }

  enabled(): Driver[] {
    return [...this.built.values()];
  }

  /** Whether this process serves the driver: several processes (one per driver) may share a store. */
  isEnabled(name: string): boolean {
    return this.built.has(name);
  }

  get(name: string): Driver {
    const driver = this.built.get(name);
    if (driver) return driver;
    const hint = this.factories.has(name)
      ? `driver ${name} is not enabled; add it to "drivers" in the config`
      : `unknown driver ${JSON.stringify(name)}; known drivers: ${this.known().join(', ')}`;
    throw new StowageError('UNKNOWN_DRIVER', hint);
  }
}
