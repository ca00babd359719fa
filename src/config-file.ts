import { existsSync } from 'node:fs';

export const DEFAULT_CONFIG_FILE = '/etc/stowage/config.yaml';

/**
 * The config file a process reads: the one named (a flag), else $STOWAGE_CONFIG, else the default
 * path when it exists; undefined when there is none. Its own module, without zod or yaml, because
 * the flexvolume executable's config cache (src/config-cache.ts) must find the same file as
 * loadConfig without loading either.
 */
export function configFileOf(named: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  return (
    named ??
    (env.STOWAGE_CONFIG || undefined) ??
    (existsSync(DEFAULT_CONFIG_FILE) ? DEFAULT_CONFIG_FILE : undefined)
  );
}
