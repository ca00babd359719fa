import { mkdir, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { formatMs } from '../base/backoff.js';
import { StowageError } from '../base/errors.js';
import { nodeCrypto } from '../base/node-crypto.js';
import type { DriverContext, VolumeInput } from './driver.js';

/**
 * Server-side work on an NFS share (plain NFS or EFS): mount the share root on a private staging
 * directory, make / adopt / delete / archive a volume's subdirectory through it, unmount. Every
 * step runs through the Mounter and FileOps seams with the share's deadline.
 */
export interface ShareLocation {
  /** Who answers: a server name, or an EFS mount target's address. */
  server: string;
  /** The share root on the server, e.g. /exports or / */
  path: string;
  fsType: 'nfs' | 'nfs4';
  mountOptions: string[];
  timeoutMs: number;
}

export interface DirSpec {
  mode: string;
  uid?: number;
  gid?: number;
}

/** A volume's subdirectory on its share: the `subdir` option with `{name}` filled in, else the name. */
export function subdirFor(template: string | undefined, volumeName: string): string {
  return (template ?? '{name}').replaceAll('{name}', volumeName);
}

export type ProvisionedDir = { adopted: false } | { adopted: true };

export async function withShare<T>(
  ctx: DriverContext,
  loc: ShareLocation,
  fn: (root: string) => Promise<T>,
): Promise<T> {
  const staging = join(ctx.stagingDir, `share-${nodeCrypto().randomBytes(6).toString('hex')}`);
  await mkdir(staging, { recursive: true, mode: 0o700 });
  try {
    await ctx.mounter.mount(`${loc.server}:${loc.path}`, staging, {
      fsType: loc.fsType,
      options: loc.mountOptions,
      timeoutMs: loc.timeoutMs,
    });
  } catch (err) {
    await rmdir(staging).catch(() => undefined);
    throw serverError(err, loc);
  }
  try {
    return await fn(staging);
  } catch (err) {
    throw serverError(err, loc);
  } finally {
    try {
      await ctx.mounter.unmount(staging, { timeoutMs: loc.timeoutMs });
    } catch {
      await ctx.mounter.unmount(staging, { lazy: true, timeoutMs: loc.timeoutMs }).catch(() => undefined);
    }
    // Only an empty, unmounted directory goes: rmdir refuses anything else, which is the point.
    await rmdir(staging).catch(() => undefined);
  }
}

/**
 * Makes `subdir` under the share with mode/owner, or finds it already there. An existing directory
 * is this Create's only when an earlier attempt noted `madeDir` before making it; any other is
 * reported as adopted.
 */
export function provisionDir(
  ctx: DriverContext,
  loc: ShareLocation,
  subdir: string,
  dir: DirSpec,
  volume: Pick<VolumeInput, 'noted' | 'note'>,
): Promise<ProvisionedDir> {
  return withShare(ctx, loc, async (root) => {
    const path = join(root, subdir);
    const kind = await ctx.files.kind(path, loc.timeoutMs);
    if (kind !== null && volume.noted.madeDir !== true) {
      if (kind !== 'directory') {
        throw new StowageError(
          'CONFLICT',
          `${loc.server}:${join(loc.path, subdir)} exists and is a ${kind}, not a directory`,
        );
      }
      return { adopted: true };
    }
    const owner = {
      ...(dir.uid !== undefined ? { uid: dir.uid } : {}),
      ...(dir.gid !== undefined ? { gid: dir.gid } : {}),
    };
    await volume.note({ madeDir: true });
    await ctx.files.makeDir(path, { mode: dir.mode, ...owner, timeoutMs: loc.timeoutMs });
    return { adopted: false };
  });
}

/** Deletes or archives (renames to archived-<subdir>-<UTC time>) `subdir`; already gone is success. */
export function removeDir(
  ctx: DriverContext,
  loc: ShareLocation,
  subdir: string,
  policy: 'delete' | 'archive',
): Promise<string | undefined> {
  return withShare(ctx, loc, async (root) => {
    const path = join(root, subdir);
    if ((await ctx.files.kind(path, loc.timeoutMs)) === null) return undefined;
    if (policy === 'delete') {
      await ctx.files.removeTree(path, loc.timeoutMs);
      return undefined;
    }
    const archived = `archived-${subdir.replaceAll('/', '-')}-${timestamp()}`;
    await ctx.files.rename(path, join(root, archived), loc.timeoutMs);
    return archived;
  });
}

function serverError(err: unknown, loc: ShareLocation): unknown {
  if (err instanceof StowageError && err.code === 'TIMEOUT' && !err.message.startsWith('NFS server')) {
    return new StowageError(
      'TIMEOUT',
      `NFS server ${loc.server} did not answer within ${formatMs(loc.timeoutMs)} (${err.message}); check that it is up and reachable`,
      { cause: err },
    );
  }
  return err;
}

function timestamp(): string {
  return new Date()
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
}
