import type { Command } from 'commander';
import { type Config, loadConfig } from '../config.js';
import { openRuntime, type Runtime } from '../runtime.js';

interface GlobalFlags {
  config?: string;
  dataDir?: string;
  state?: string;
  mountRoot?: string;
  socketDir?: string;
  socketPrefix?: string;
  drivers?: string;
  hostId?: string;
  logLevel?: string;
  logFile?: string;
}

export function configFrom(cmd: Command): Config {
  const f = cmd.optsWithGlobals<GlobalFlags>();
  return loadConfig({
    ...(f.config ? { file: f.config } : {}),
    flags: {
      dataDir: f.dataDir,
      state: f.state,
      mountRoot: f.mountRoot,
      socketDir: f.socketDir,
      socketPrefix: f.socketPrefix,
      drivers: f.drivers
        ?.split(',')
        .map((s) => s.trim())
        .filter(Boolean),
      hostId: f.hostId,
      log: { level: f.logLevel, file: f.logFile },
    },
  });
}

/** CLI commands print warnings only; the daemon logs at the configured level. */
export function quiet(config: Config): Config {
  return { ...config, log: { ...config.log, level: 'warn' } };
}

export function print(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** Runs `fn` with a runtime opened from the command's config (quiet) and always closes it. */
export function withRuntime<T>(cmd: Command, fn: (rt: Runtime) => Promise<T>): Promise<T> {
  return runWith(cmd, fn, false);
}

/**
 * withRuntime for a command that reads every volume (`volumes ls`): with etcd, one paged read of
 * the prefix into the read cache instead of a request per volume (see RuntimeOverrides.readCache).
 */
export function withCachedRuntime<T>(cmd: Command, fn: (rt: Runtime) => Promise<T>): Promise<T> {
  return runWith(cmd, fn, true);
}

async function runWith<T>(cmd: Command, fn: (rt: Runtime) => Promise<T>, readCache: boolean): Promise<T> {
  const rt = await openRuntime(quiet(configFrom(cmd)), readCache ? { readCache } : {});
  try {
    return await fn(rt);
  } finally {
    await rt.close();
  }
}
