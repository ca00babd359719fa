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
}
