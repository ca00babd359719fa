import { closeSync, fstatSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { nodeCrypto } from './base/node-crypto.js';
import { SECRET_NAME } from './base/secret-names.js';
import type { Config } from './config.js';
import { configFileOf } from './config-file.js';

/**
 * The flexvolume executable's validated-config cache. kubelet starts the executable once per call,
 * and reading the config the slow way (yaml, then zod's schema, built and run) costs more than the
 * rest of a call that opens the store. So the validated config is kept in a file, and a call whose
 * inputs are the same as when it was written reads it back with JSON.parse: no yaml, no zod.
 *
 * The inputs are everything loadConfig reads: the config file (which one, and its bytes), each
 * environment variable it looked up (recorded while it ran, set or not), the hostname (hostId's
 * default) and the build (a new stowage may read the same file differently). Any change of one of
 * them is a miss: the config is loaded and checked as without a cache, so a bad config fails with
 * the same message and is never written. A cache that cannot be read, is not this user's alone,
 * or does not parse is a miss too, and is replaced. Written atomically (a temporary file renamed
 * over it), mode 0600. A config in which a secret-looking variable (STOWAGE_ETCD_PASSWORD; not a
 * *_FILE one, which holds a path) was set is not written at all: the file holds no secret that the
 * config file itself does not hold.
 */
export interface ConfigCacheFile {
  /** The cache file: `.config-cache.json` next to the flexvolume bundle. */
  path: string;
  /** The build that wrote it; a cache of another build is never used. */
  buildId: string;
}

/** What the file holds. `key` is the inputs and `config` (the JSON text) together. */
interface Entry {
  v: 2;
  buildId: string;
  /** The environment variables loadConfig looked up, in order. */
  names: string[];
  key: string;
  config: string;
}

/**
 * The config loadConfig(env) gives, from the cache when its inputs are unchanged. `load` is the
 * slow path (loadConfig itself); it receives an environment that records which variables it reads.
 */
export async function cachedConfig(
  cache: ConfigCacheFile,
  env: NodeJS.ProcessEnv,
  load: (env: NodeJS.ProcessEnv) => Config | Promise<Config>,
): Promise<Config> {
  const file = configFileOf(undefined, env);
  const fileBytes = readOrNull(file);
  const entry = readEntry(cache);
  if (entry && fileBytes !== undefined) {
    const key = entryKey(cache.buildId, file, fileBytes, entry.names, env, entry.config);
    if (key === entry.key) return JSON.parse(entry.config) as Config;
  }
  const recorder = recordingEnv(env);
  const config = await load(recorder.env);
  const names = recorder.names();
  // Written only from inputs seen whole: the file unchanged while it was loaded, every variable
  // read by name, none of them a secret.
  const unchanged = fileBytes !== undefined && sameBytes(readOrNull(file), fileBytes);
  if (unchanged && names && !names.some((n) => holdsSecret(n) && env[n])) {
    writeEntry(cache, file, fileBytes, names, env, JSON.stringify(config));
  }
  return config;
}

/** STOWAGE_ETCD_PASSWORD holds a secret; STOWAGE_ETCD_PASSWORD_FILE only the path of one. */
function holdsSecret(name: string): boolean {
  return SECRET_NAME.test(name) && !name.endsWith('_FILE');
}

function entryKey(
  buildId: string,
  file: string | undefined,
  fileBytes: Buffer | null,
  names: readonly string[],
  env: NodeJS.ProcessEnv,
  config: string,
): string {
  // The inputs themselves, not a digest of them: compared whole, no two different inputs can
  // match, and no node:crypto to load (~2.5 ms of every call). Nothing here is a secret the file
  // may not hold (see above). Each part length-prefixed, so that parts cannot run into each other;
  // the config file's bytes as latin1, one character per byte.
  const parts: string[] = [];
  const part = (data: string | Buffer) => {
    const text = typeof data === 'string' ? data : data.toString('latin1');
    parts.push(`${text.length}:`, text);
  };
  part(buildId);
  part(hostname());
  part(file === undefined ? '-' : `+${file}`);
  part(fileBytes === null ? '-' : Buffer.concat([Buffer.from('+'), fileBytes]));
  for (const name of names) {
    const value = env[name];
    part(name);
    part(value === undefined ? '-' : `+${value}`);
  }
  part(config);
  return parts.join('');
}

/** The file's bytes; null when there is no file; undefined when it cannot be read (no caching). */
function readOrNull(file: string | undefined): Buffer | null | undefined {
  if (file === undefined) return null;
  try {
    return readFileSync(file);
  } catch {
    return undefined;
  }
}

function sameBytes(a: Buffer | null | undefined, b: Buffer | null): boolean {
  if (a === undefined) return false;
  if (a === null || b === null) return a === b;
  return a.equals(b);
}

/** The entry in the cache file, or undefined when there is none usable. */
function readEntry(cache: ConfigCacheFile): Entry | undefined {
  let text: string;
  try {
    const fd = openSync(cache.path, 'r');
    try {
      // Only a file this user alone can write (and read: it may hold the config file's secrets).
      const st = fstatSync(fd);
      if (!st.isFile() || st.uid !== process.getuid?.() || (st.mode & 0o077) !== 0) return undefined;
      text = readFileSync(fd, 'utf8');
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
  try {
    const e = JSON.parse(text) as Partial<Entry>;
    const ok =
      e.v === 2 &&
      e.buildId === cache.buildId &&
      Array.isArray(e.names) &&
      e.names.every((n) => typeof n === 'string') &&
      typeof e.key === 'string' &&
      typeof e.config === 'string';
    return ok ? (e as Entry) : undefined;
  } catch {
    return undefined;
  }
}

function writeEntry(
  cache: ConfigCacheFile,
  file: string | undefined,
  fileBytes: Buffer | null,
  names: string[],
  env: NodeJS.ProcessEnv,
  config: string,
): void {
  const entry: Entry = {
    v: 2,
    buildId: cache.buildId,
    names,
    key: entryKey(cache.buildId, file, fileBytes, names, env, config),
    config,
  };
  const tmp = `${cache.path}.${process.pid}-${nodeCrypto().randomBytes(4).toString('hex')}.tmp`;
  try {
    writeFileSync(tmp, JSON.stringify(entry), { mode: 0o600, flag: 'wx' });
    renameSync(tmp, cache.path);
  } catch {
    // A directory that cannot be written only means no cache: the next call loads the slow way.
    rmSync(tmp, { force: true });
  }
}

/**
 * `env` as loadConfig sees it, noting each variable it looks up. Anything that lists the
 * variables instead (a spread, Object.keys) makes the read set unknown: names() is undefined then.
 */
function recordingEnv(env: NodeJS.ProcessEnv): {
  env: NodeJS.ProcessEnv;
  names: () => string[] | undefined;
} {
  const names = new Set<string>();
  let listed = false;
  const proxy = new Proxy(env, {
    get(target, name) {
      if (typeof name === 'string') names.add(name);
      return Reflect.get(target, name);
    },
    has(target, name) {
      if (typeof name === 'string') names.add(name);
      return Reflect.has(target, name);
    },
    ownKeys(target) {
      listed = true;
      return Reflect.ownKeys(target);
    },
    getOwnPropertyDescriptor(target, name) {
      listed = true;
      return Reflect.getOwnPropertyDescriptor(target, name);
    },
  });
  return { env: proxy, names: () => (listed ? undefined : [...names]) };
}
