import { StowageError } from '../base/errors.js';
import type { CommandRunner } from './exec.js';

/**
 * File operations on remote filesystems (an NFS share mounted on a staging directory). They run
 * as child processes with deadlines rather than through node:fs: a dead server makes a syscall
 * hang, and a hung fs call in node occupies a libuv worker forever, while a process can be killed.
 * Only standard flags, so busybox and coreutils both serve.
 */
export interface FileOps {
  /** Type of what is at `path` ("directory", "regular file", ...), or null when nothing is there. */
  kind(path: string, timeoutMs: number): Promise<string | null>;
  /** mkdir -p, then the leaf gets `mode` (octal text) and, when given, owner uid:gid. */
  makeDir(path: string, opts: { mode: string; uid?: number; gid?: number; timeoutMs: number }): Promise<void>;
  rename(from: string, to: string, timeoutMs: number): Promise<void>;
  removeTree(path: string, timeoutMs: number): Promise<void>;
  /** Space and inodes of the filesystem holding `path` (statfs, through `stat -f`). */
  usage(path: string, timeoutMs: number): Promise<FsUsage>;
  /**
   * Gives the directory `path` (not what is under it) to group `gid`: group read, write and
   * search, and the setgid bit so that what is made in it inherits the group. Idempotent.
   */
  shareWithGroup(path: string, gid: number, timeoutMs: number): Promise<void>;
}

/** A filesystem's capacity as statfs reports it: bytes for the unprivileged user, and inodes. */
export interface FsUsage {
  totalBytes: number;
  usedBytes: number;
  availableBytes: number;
  totalInodes: number;
  usedInodes: number;
  availableInodes: number;
}

export class SpawnFileOps implements FileOps {
  constructor(private readonly runner: CommandRunner) {}

  async kind(path: string, timeoutMs: number): Promise<string | null> {
    const res = await this.runner.run('stat', ['-c', '%F', '--', path], {
      timeoutMs,
      okExitCodes: [1],
      what: `stat of ${path}`,
    });
    return res.exitCode === 0 ? res.stdout.trim() : null;
  }

  async makeDir(
    path: string,
    opts: { mode: string; uid?: number; gid?: number; timeoutMs: number },
  ): Promise<void> {
    const t = { timeoutMs: opts.timeoutMs };
    await this.runner.run('mkdir', ['-p', '--', path], { ...t, what: `mkdir ${path}` });
    await this.runner.run('chmod', [opts.mode, '--', path], { ...t, what: `chmod ${path}` });
    if (opts.uid !== undefined || opts.gid !== undefined) {
      const owner = `${opts.uid ?? ''}:${opts.gid ?? ''}`;
      await this.runner.run('chown', [owner, '--', path], { ...t, what: `chown ${path}` });
    }
  }

  async rename(from: string, to: string, timeoutMs: number): Promise<void> {
    await this.runner.run('mv', ['--', from, to], { timeoutMs, what: `rename of ${from}` });
  }

  async removeTree(path: string, timeoutMs: number): Promise<void> {
    await this.runner.run('rm', ['-rf', '--', path], { timeoutMs, what: `removal of ${path}` });
  }

  async usage(path: string, timeoutMs: number): Promise<FsUsage> {
    // Total blocks, free blocks, blocks free to non-root, block size, total inodes, free inodes.
    const res = await this.runner.run('stat', ['-f', '-c', '%b %f %a %S %c %d', '--', path], {
      timeoutMs,
      what: `statfs of ${path}`,
    });
    return parseStatfs(res.stdout, path);
  }

  async shareWithGroup(path: string, gid: number, timeoutMs: number): Promise<void> {
    const t = { timeoutMs };
    await this.runner.run('chgrp', [String(gid), '--', path], { ...t, what: `chgrp of ${path}` });
    await this.runner.run('chmod', ['g+rwxs', '--', path], { ...t, what: `chmod of ${path}` });
  }
}

/** `stat -f -c '%b %f %a %S %c %d'` as an FsUsage; INTERNAL when it printed something else. */
export function parseStatfs(stdout: string, path: string): FsUsage {
  const fields = stdout.trim().split(/\s+/);
  const n = fields.map((f) => (/^\d+$/.test(f) ? Number(f) : Number.NaN));
  if (n.length !== 6 || !n.every((x) => Number.isSafeInteger(x))) {
    throw new StowageError('INTERNAL', `stat -f of ${path} printed ${JSON.stringify(stdout.slice(0, 200))}`);
  }
  const [blocks, free, avail, blockSize, files, freeFiles] = n as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  return {
    totalBytes: blocks * blockSize,
    usedBytes: (blocks - free) * blockSize,
    availableBytes: avail * blockSize,
    totalInodes: files,
    usedInodes: files - freeFiles,
    availableInodes: freeFiles,
  };
}
