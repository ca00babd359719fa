import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CONFIG_CACHE_FILE, flexConfig } from '../flexvolume/runtime.js';
import { isStowageError } from '../src/base/errors.js';
import { type Config, loadConfig } from '../src/config.js';
import { type ConfigCacheFile, cachedConfig } from '../src/config-cache.js';

/**
 * The flexvolume executable's validated-config cache: a call whose config file, environment and
 * build are those of the call that wrote the cache gets the same config without loadConfig (no yaml,
 * no zod); any change of them, a damaged cache, a bad config or a secret from the environment
 * falls back to loadConfig exactly as without a cache.
 */

let dir: string;
let cache: ConfigCacheFile;
let file: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'stowage-config-cache-'));
  cache = { path: join(dir, '.config-cache.json'), buildId: 'a'.repeat(64) };
  file = join(dir, 'config.yaml');
  await writeFile(file, `dataDir: ${join(dir, 'data')}\nlocal:\n  defaultSize: 2G\n`);
});

afterEach(async () => {
  vi.unstubAllEnvs();
  await rm(dir, { recursive: true, force: true });
});

/** loadConfig, counting its calls: a cache hit makes none. */
function countingLoad() {
  const load = vi.fn((env: NodeJS.ProcessEnv) => loadConfig({ env }));
  return load;
}

async function configFrom(env: NodeJS.ProcessEnv, load = countingLoad()): Promise<Config> {
  return cachedConfig(cache, env, load);
}

/** The error `work` fails with; fails the test when it succeeds. */
async function failure(work: Promise<unknown>): Promise<Error> {
  const result = await work.then(
    () => undefined,
    (err: Error) => err,
  );
  expect(result, 'expected a failure').toBeInstanceOf(Error);
  return result as Error;
}

describe('cachedConfig', () => {
  it('loads once, then answers the same config from the cache without loading', async () => {
    const env = { STOWAGE_CONFIG: file };
    const first = countingLoad();
    const loaded = await configFrom(env, first);
    expect(first).toHaveBeenCalledTimes(1);
    expect(loaded.local.defaultSize).toBe('2G');

    const second = countingLoad();
    const cached = await configFrom(env, second);
    expect(second).not.toHaveBeenCalled();
    // The very value loadConfig gives: nothing lost or changed by the trip through JSON.
    expect(cached).toStrictEqual(loadConfig({ env }));
  });

  it('loads again when the config file changes, and answers the new config', async () => {
    const env = { STOWAGE_CONFIG: file };
    await configFrom(env);
    await writeFile(file, `dataDir: ${join(dir, 'data')}\nlocal:\n  defaultSize: 3G\n`);
    const load = countingLoad();
    expect((await configFrom(env, load)).local.defaultSize).toBe('3G');
    expect(load).toHaveBeenCalledTimes(1);
    // ... and the new config is the one cached now.
    const again = countingLoad();
    expect((await configFrom(env, again)).local.defaultSize).toBe('3G');
    expect(again).not.toHaveBeenCalled();
  });

  it('loads again when a variable loadConfig reads is set, changed or unset', async () => {
    await configFrom({ STOWAGE_CONFIG: file });
    for (const env of [
      { STOWAGE_CONFIG: file, STOWAGE_LOG_LEVEL: 'debug' },
      { STOWAGE_CONFIG: file, STOWAGE_LOG_LEVEL: 'warn' },
      { STOWAGE_CONFIG: file, RANCHER_DEBUG: 'true' },
      { STOWAGE_CONFIG: file },
    ]) {
      const load = countingLoad();
      const config = await configFrom(env, load);
      expect(load, JSON.stringify(env)).toHaveBeenCalledTimes(1);
      expect(config).toStrictEqual(loadConfig({ env }));
    }
  });

  it('loads again when the config file is another one, or when there is none', async () => {
    await configFrom({ STOWAGE_CONFIG: file });
    const other = join(dir, 'other.yaml');
    await writeFile(other, `dataDir: ${join(dir, 'data')}\nlocal:\n  defaultSize: 2G\n`);
    const load = countingLoad();
    await configFrom({ STOWAGE_CONFIG: other }, load);
    expect(load).toHaveBeenCalledTimes(1);
  });

  it('does not use a cache written by another build', async () => {
    const env = { STOWAGE_CONFIG: file };
    await configFrom(env);
    cache = { ...cache, buildId: 'b'.repeat(64) };
    const load = countingLoad();
    await configFrom(env, load);
    expect(load).toHaveBeenCalledTimes(1);
  });

  it('ignores a damaged cache and writes it anew', async () => {
    const env = { STOWAGE_CONFIG: file };
    await configFrom(env);
    const good = await readFile(cache.path, 'utf8');
    const damaged = [
      'not json',
      good.slice(0, good.length / 2),
      JSON.stringify({ ...JSON.parse(good), config: JSON.stringify({ dataDir: '/elsewhere' }) }),
      JSON.stringify({ ...JSON.parse(good), names: 'STOWAGE_CONFIG' }),
    ];
    for (const text of damaged) {
      await writeFile(cache.path, text, { mode: 0o600 });
      const load = countingLoad();
      const config = await configFrom(env, load);
      expect(load, text.slice(0, 40)).toHaveBeenCalledTimes(1);
      expect(config).toStrictEqual(loadConfig({ env }));
      expect(await readFile(cache.path, 'utf8')).toBe(good);
    }
  });

  it('ignores a cache others may write or read, and writes it mode 0600', async () => {
    const env = { STOWAGE_CONFIG: file };
    await configFrom(env);
    expect((await stat(cache.path)).mode & 0o777).toBe(0o600);
    await chmod(cache.path, 0o644);
    const load = countingLoad();
    await configFrom(env, load);
    expect(load).toHaveBeenCalledTimes(1);
    expect((await stat(cache.path)).mode & 0o777).toBe(0o600);
  });

  it('never caches a bad config: the same error as loadConfig, every time, and the cache untouched', async () => {
    const env = { STOWAGE_CONFIG: file };
    await configFrom(env);
    const good = await readFile(cache.path, 'utf8');
    await writeFile(file, 'local:\n  defaultSize: huge\n');
    let expected: unknown;
    try {
      loadConfig({ env });
    } catch (err) {
      expected = err;
    }
    expect(isStowageError(expected, 'CONFIG')).toBe(true);
    for (let i = 0; i < 2; i++) {
      const err = await failure(configFrom(env));
      expect(err).toStrictEqual(expected);
      expect(err.message).toBe((expected as Error).message);
      expect(await readFile(cache.path, 'utf8')).toBe(good);
    }
  });

  it('never writes a config a secret variable set, nor keeps one from an earlier call', async () => {
    const env = { STOWAGE_CONFIG: file, STOWAGE_ETCD_USERNAME: 'u', STOWAGE_ETCD_PASSWORD: 'hunter2' };
    const load = countingLoad();
    expect((await configFrom(env, load)).etcd.password).toBe('hunter2');
    await expect(stat(cache.path)).rejects.toThrow(/ENOENT/);
    // Each such call loads the config the slow way.
    const again = countingLoad();
    await configFrom(env, again);
    expect(again).toHaveBeenCalledTimes(1);
    await expect(stat(cache.path)).rejects.toThrow(/ENOENT/);
  });

  it('caches a config whose secret comes from a file named by a variable (a path is no secret)', async () => {
    const env = {
      STOWAGE_CONFIG: file,
      STOWAGE_ETCD_USERNAME: 'u',
      STOWAGE_ETCD_PASSWORD_FILE: join(dir, 'etcd-password'),
    };
    await configFrom(env);
    const again = countingLoad();
    expect((await configFrom(env, again)).etcd.passwordFile).toBe(join(dir, 'etcd-password'));
    expect(again).not.toHaveBeenCalled();
  });

  it('loads without caching when the config file cannot be read, with loadConfig’s error', async () => {
    const env = { STOWAGE_CONFIG: join(dir, 'missing.yaml') };
    const err = await failure(configFrom(env));
    expect(err.message).toMatch(/^cannot read config file .*missing\.yaml/);
    await expect(stat(cache.path)).rejects.toThrow(/ENOENT/);
  });
});

describe('flexConfig', () => {
  it('keeps the cache next to the bundle when it knows its build, and enables only its driver', async () => {
    vi.stubEnv('STOWAGE_CONFIG', file);
    const config = await flexConfig('nfs', { dir, buildId: 'c'.repeat(64) });
    expect(config.drivers).toEqual(['nfs']);
    const entry = JSON.parse(await readFile(join(dir, CONFIG_CACHE_FILE), 'utf8')) as { buildId: string };
    expect(entry.buildId).toBe('c'.repeat(64));
    expect(await flexConfig('nfs', { dir, buildId: 'c'.repeat(64) })).toStrictEqual(config);
  });

  it('has no cache when run unbundled (no build id)', async () => {
    vi.stubEnv('STOWAGE_CONFIG', file);
    await flexConfig('local', { dir });
    await expect(stat(join(dir, CONFIG_CACHE_FILE))).rejects.toThrow(/ENOENT/);
  });
});
