import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadDriver } from '../drivers/load.js';
import { StowageError } from '../src/base/errors.js';
import type { AwsCredentials } from '../src/cloud/client-options.js';
import type { Config } from '../src/config.js';
import { cachedConfig } from '../src/config-cache.js';
import { DriverRegistry } from '../src/core/registry.js';
import { createLineLogger } from '../src/log-lines.js';
import { openRuntime, type Runtime } from '../src/runtime.js';

/** Where the executable's files are: the SQLite addon ships next to the bundle. */
export interface FlexInstall {
  dir?: string;
  /** This call's AWS credentials (from the PV's Secret), for the AWS clients. */
  awsCredentials?: AwsCredentials;
}

/** Where the executable runs from, and which build it is (scripts/bundle-flexvolume.mjs stamps it). */
export interface FlexBundle {
  dir: string;
  /** Undefined when the code runs unbundled (tests): no config cache then. */
  buildId?: string;
  /**
   * The process exits as soon as the reply is written (bin.ts): the store is then closed for an
   * exit (StateStore.close's `exiting`), leaving what only tidies up to the next opener.
   */
  exitsAfter?: boolean;
}

/** The validated-config cache's file, next to the bundle (a dot-name: kubelet ignores it). */
export const CONFIG_CACHE_FILE = '.config-cache.json';

/**
 * The config the executable reads: the daemon's own (/etc/stowage/config.yaml or $STOWAGE_CONFIG).
 * The bundled executable keeps it validated in a cache next to itself (src/config-cache.ts): zod and
 * yaml are loaded only when the file or the environment changed since the last call.
 */
export async function flexConfig(driver: string, bundle?: FlexBundle): Promise<Config> {
  const load = async (env: NodeJS.ProcessEnv) => (await import('../src/config.js')).loadConfig({ env });
  const config = bundle?.buildId
    ? await cachedConfig(
        { path: join(bundle.dir, CONFIG_CACHE_FILE), buildId: bundle.buildId },
        process.env,
        load,
      )
    : await load(process.env);
  // The installed executable is the driver: it is enabled whatever the daemon's list says.
  return { ...config, drivers: [driver] };
}

/**
 * The same runtime the daemon builds, with only this driver loaded and a log file (stdout and
 * stderr belong to kubelet). Lines are written synchronously (the process exits right after), by
 * the small writer of src/log-lines.ts: the daemon's lines, without loading pino.
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
  const log = createLineLogger({
    level: config.log.level,
    file: config.flexvolume.logFile ?? join(config.dataDir, 'flexvolume.log'),
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
