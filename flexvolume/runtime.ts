import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadDriver } from '../drivers/load.js';
import { StowageError } from '../src/base/errors.js';
import type { AwsCredentials } from '../src/cloud/client-options.js';
import { type Config, loadConfig } from '../src/config.js';
import { DriverRegistry } from '../src/core/registry.js';
import { createLogger } from '../src/log.js';
import { openRuntime, type Runtime } from '../src/runtime.js';

/** Where the executable's files are: the SQLite addon ships next to the bundle. */
export interface FlexInstall {
  dir?: string;
  /** This call's AWS credentials (from the PV's Secret), for the AWS clients. */
  awsCredentials?: AwsCredentials;
}

/** The config the executable reads: the daemon's own (/etc/stowage/config.yaml or $STOWAGE_CONFIG). */
export function flexConfig(driver: string): Config {
  const config = loadConfig();
  // The installed executable is the driver: it is enabled whatever the daemon's list says.
  return { ...config, drivers: [driver] };
}

/**
 * The same runtime the daemon builds, with only this driver loaded and a log file (stdout and
 * stderr belong to kubelet). Lines are written synchronously: the process exits right after.
 */
export async function openFlexRuntime(
  driver: string,
  config: Config,
  install: FlexInstall,
): Promise<Runtime> {
  const factory = await loadDriver(driver);
  if (!factory) throw new StowageError('UNKNOWN_DRIVER', `unknown driver ${JSON.stringify(driver)}`);
  const registry = new DriverRegistry();
  registry.register(driver, factory);
  const log = createLogger({
    level: config.log.level,
    file: config.flexvolume.logFile ?? join(config.dataDir, 'flexvolume.log'),
    sync: true,
    base: { host: config.hostId, driver, pid: process.pid, via: 'flexvolume' },
  });
  const addon = install.dir ? join(install.dir, 'better_sqlite3.node') : undefined;
  return openRuntime(config, {
    log,
    registry,
    ...(addon && existsSync(addon) ? { nativeBinding: addon } : {}),
    ...(install.awsCredentials ? { awsCredentials: install.awsCredentials } : {}),
  });
}
