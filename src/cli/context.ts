import type { Command } from 'commander';
import { type Config, loadConfig } from '../config.js';
import { resultCode } from '../core/door-requests.js';
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

/**
 * Runs `fn` with a runtime opened from the command's config (quiet) and always closes it. The
 * command is counted in the store as a request of door `cli` (for the daemon's /metrics), once its
 * outcome is known: operation the command as typed (`volumes rm`), no driver (a command names a
 * volume, whatever its driver), the duration from the process's start.
 */
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
  let code = 'OK';
  try {
    return await fn(rt);
  } catch (err) {
    code = resultCode(err);
    throw err;
  } finally {
    await rt.requests.record({
      door: 'cli',
      driver: '',
      operation: commandPath(cmd),
      code,
      seconds: performance.now() / 1000,
    });
    await rt.close();
  }
}

/** The command's words after `stowage`: `volumes rm`, `hosts ls`. */
export function commandPath(cmd: Command): string {
  const words: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) words.unshift(c.name());
  return words.join(' ');
}
