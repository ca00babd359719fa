import { execa } from 'execa';
import { formatMs } from '../core/backoff.js';
import { StowageError } from '../core/errors.js';
import { trackChild, untrackChild } from './children.js';

export interface CommandResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export interface RunOptions {
  timeoutMs: number;
  /** Exit codes that are answers rather than failures (blkid's 2 = "nothing found"). */
  okExitCodes?: readonly number[];
  /** Said in the TIMEOUT message, e.g. "mount of /dev/loop3". */
  what?: string;
}

/** The only way stowage starts a process: an argv array, never a shell, always a deadline. */
export interface CommandRunner {
  run(command: string, args: readonly string[], opts: RunOptions): Promise<CommandResult>;
}

/** Debian package that provides each tool we spawn, for "how to install it" messages. */
const PACKAGE_OF: Record<string, string> = {
  mount: 'mount',
  umount: 'mount',
  losetup: 'mount',
  blkid: 'util-linux',
  'mkfs.ext4': 'e2fsprogs',
  'mkfs.xfs': 'xfsprogs',
  e2fsck: 'e2fsprogs',
  resize2fs: 'e2fsprogs',
  xfs_growfs: 'xfsprogs',
  blockdev: 'util-linux',
};

export class ExecaRunner implements CommandRunner {
  async run(command: string, args: readonly string[], opts: RunOptions): Promise<CommandResult> {
    // Its own process group, so that the deadline kills helpers it started too (mount.nfs...):
    // otherwise a child holding our pipes open keeps us waiting long past the deadline.
    const sub = execa(command, args, {
      timeout: opts.timeoutMs,
      killSignal: 'SIGKILL',
      reject: false,
      stdin: 'ignore',
      shell: false,
      detached: true,
      env: { LC_ALL: 'C' },
    });
    const timer = setTimeout(() => killGroup(sub.pid), opts.timeoutMs);
    const pid = sub.pid;
    if (pid !== undefined) trackChild(pid);
    const res = await sub.finally(() => {
      clearTimeout(timer);
      if (pid !== undefined) untrackChild(pid);
    });
    const what = opts.what ?? [command, ...args].join(' ');
    if (res.timedOut) {
      throw new StowageError(
        'TIMEOUT',
        `${what} did not finish within ${formatMs(opts.timeoutMs)} and was killed`,
      );
    }
    if ((res as { code?: string }).code === 'ENOENT') {
      const pkg = PACKAGE_OF[command];
      throw new StowageError(
        'UNAVAILABLE',
        `cannot run ${command}: ${res.shortMessage}${pkg ? ` (install it with: apt-get install ${pkg})` : ''}`,
      );
    }
    if (res.signal) {
      throw new StowageError('INTERNAL', `${what} was killed by ${res.signal}`);
    }
    const exitCode = res.exitCode ?? -1;
    if (exitCode !== 0 && !(opts.okExitCodes ?? []).includes(exitCode)) {
      const detail = (String(res.stderr).trim() || String(res.stdout).trim())
        .split('\n')
        .slice(-3)
        .join('; ');
      throw new StowageError('INTERNAL', `${what} failed (exit ${exitCode}): ${detail || 'no output'}`);
    }
    return { stdout: String(res.stdout), stderr: String(res.stderr), exitCode };
  }
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
