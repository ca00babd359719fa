import { readFile } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { StowageError } from '../base/errors.js';
import type { Config } from '../config.js';
import type { ReadCacheLog } from './etcd-cache.js';
import { type EtcdUrl, parseEtcdUrl } from './etcd-url.js';
import { SqliteStore } from './sqlite-store.js';
import type { StateStore } from './store.js';

export type StoreLocation = { kind: 'sqlite'; path: string } | ({ kind: 'etcd' } & EtcdUrl);

export interface OpenStoreOptions {
  /** The SQLite addon's path when bundled (the flexvolume executable carries its own). */
  nativeBinding?: string;
  /**
   * etcd only: keep a watch-fed read cache (etcd-cache.ts) for Get, Path and List. For processes
   * that live (the daemon) or read everything (`volumes ls`); a process that reads one volume and
   * exits (flexvolume, `inspect`) reads etcd directly instead of loading the whole prefix.
   * `log` hears the cache's loads, reloads and stale periods.
   */
  readCache?: { log?: ReadCacheLog };
}

/** `config.state`: a SQLite file (`/path`, `sqlite:/path`) or an etcd URL (`etcd://`, `etcds://`). */
export function storeLocation(state: string): StoreLocation {
  if (/^etcds?:\/\//i.test(state)) return { kind: 'etcd', ...parseEtcdUrl(state) };
  return { kind: 'sqlite', path: state.replace(/^sqlite:/, '') };
}

/**
 * Opens the configured store. etcd's client (grpc) is loaded only when configured: SQLite users and
 * the flexvolume executable on SQLite do not pay for it. Opening never waits for etcd: a daemon
 * starts while etcd is down and each request fails fast until it is back.
 */
export function openStore(config: Config, opts: OpenStoreOptions = {}): Promise<StateStore> {
  return openStoreAt(config.state, config.etcd, opts);
}

/** A store at `location` (a SQLite path or an etcd URL), with etcd's settings from the config. */
export async function openStoreAt(
  location: string,
  e: Config['etcd'],
  opts: OpenStoreOptions = {},
): Promise<StateStore> {
  const where = storeLocation(location);
  if (where.kind === 'sqlite') {
    if (!isAbsolute(where.path)) {
      throw new StowageError(
        'CONFIG',
        `store ${JSON.stringify(location)}: a SQLite store is an absolute path`,
      );
    }
    return new SqliteStore(where.path, opts.nativeBinding ? { nativeBinding: opts.nativeBinding } : {});
  }
  let password = e.password;
  if (password === undefined && e.passwordFile) {
    password = (
      await readFile(e.passwordFile, 'utf8').catch((err: Error) => {
        throw new StowageError('CONFIG', `cannot read etcd.passwordFile ${e.passwordFile}: ${err.message}`);
      })
    ).trim();
  }
  if (password !== undefined && e.username === undefined) {
    throw new StowageError('CONFIG', 'an etcd password is set without etcd.username');
  }
  const tlsFiles = {
    ...(e.ca ? { ca: e.ca } : {}),
    ...(e.cert ? { cert: e.cert } : {}),
    ...(e.key ? { key: e.key } : {}),
  };
  const { EtcdStore } = await import('./etcd-store.js');
  return new EtcdStore({
    endpoints: where.endpoints,
    prefix: where.prefix,
    requestTimeoutMs: e.requestTimeoutMs,
    ...(where.tls || Object.keys(tlsFiles).length > 0 ? { tls: tlsFiles } : {}),
    ...(e.username !== undefined ? { auth: { username: e.username, password: password ?? '' } } : {}),
    ...(opts.readCache ? { readCache: opts.readCache.log ? { log: opts.readCache.log } : {} } : {}),
  });
}
