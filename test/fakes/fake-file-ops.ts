import { chmod, chown, mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { FileOps, FsUsage } from '../../src/mount/file-ops.js';
import type { FakeMounter } from './fake-mounter.js';

/**
 * FileOps over the fake mounter's NFS mounts: a path under a staging mount point is translated to
 * the local directory that plays that server (FakeMounter.nfsServers), and the operation is done
 * there for real. A path under no NFS mount is refused: the driver must only work through its
 * staging mount.
 */
export class FakeFileOps implements FileOps {
  readonly calls: { op: string; path: string }[] = [];
  /** What usage() reports for a path (any filesystem): a test sets it; else FAKE_USAGE. */
  readonly usageOf = new Map<string, FsUsage>();
  /** The group shareWithGroup() gave each directory. */
  readonly groups = new Map<string, number>();
  /** The next shareWithGroup() throws this (a filesystem that refuses chgrp). */
  failShareWith: Error | undefined;

  constructor(private readonly mounter: FakeMounter) {}

  async kind(path: string): Promise<string | null> {
    this.calls.push({ op: 'kind', path });
    try {
      const s = await stat(this.resolve(path));
      return s.isDirectory() ? 'directory' : s.isFile() ? 'regular file' : 'other';
    } catch {
      return null;
    }
  }

  async makeDir(path: string, opts: { mode: string; uid?: number; gid?: number }): Promise<void> {
    this.calls.push({ op: 'makeDir', path });
    const local = this.resolve(path);
    await mkdir(local, { recursive: true });
    await chmod(local, Number.parseInt(opts.mode, 8));
    if (opts.uid !== undefined || opts.gid !== undefined) {
      const s = await stat(local);
      await chown(local, opts.uid ?? s.uid, opts.gid ?? s.gid);
    }
  }

  async rename(from: string, to: string): Promise<void> {
    this.calls.push({ op: 'rename', path: from });
    await rename(this.resolve(from), this.resolve(to));
  }

  async removeTree(path: string): Promise<void> {
    this.calls.push({ op: 'removeTree', path });
    await rm(this.resolve(path), { recursive: true, force: true });
  }

  /** Any path: the fake kernel keeps no file contents for block filesystems, so usage is preset. */
  async usage(path: string): Promise<FsUsage> {
    this.calls.push({ op: 'usage', path });
    return this.usageOf.get(path) ?? FAKE_USAGE;
  }

  async shareWithGroup(path: string, gid: number): Promise<void> {
    this.calls.push({ op: 'shareWithGroup', path });
    const err = this.failShareWith;
    this.failShareWith = undefined;
    if (err) throw err;
    this.groups.set(path, gid);
  }

  private resolve(path: string): string {
    for (const [target, entry] of this.mounter.table) {
      if (path !== target && !path.startsWith(`${target}/`)) continue;
      const sep = entry.source.indexOf(':');
      const root = this.mounter.nfsServers.get(entry.source.slice(0, sep));
      if (sep < 0 || root === undefined) break;
      return join(root, entry.source.slice(sep + 1), path.slice(target.length));
    }
    throw new Error(`fake file ops: ${path} is not under a mounted NFS share`);
  }
}

/** What FakeFileOps.usage reports unless a test says otherwise: a 1 GiB filesystem, a quarter used. */
export const FAKE_USAGE: FsUsage = {
  totalBytes: 1024 ** 3,
  usedBytes: 256 * 1024 ** 2,
  availableBytes: 768 * 1024 ** 2,
  totalInodes: 65536,
  usedInodes: 11,
  availableInodes: 65525,
};
