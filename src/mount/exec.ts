import { spawn } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import type { Readable } from 'node:stream';
import { formatMs } from '../base/backoff.js';
import { trackChild, untrackChild } from '../base/children.js';
import { StowageError } from '../base/errors.js';

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

/** Output kept per stream; mount tools print a few lines, so this only bounds a runaway tool. */
const MAX_OUTPUT_BYTES = 4 * 1024 * 1024;

/**
 * Where each tool lives, looked up in PATH once per process. A spawn by bare name makes the child
 * try every PATH directory in turn (execvp: nine failed execve calls for `losetup` with this
 * machine's PATH); the daemon runs the same handful of tools thousands of times, so it resolves
 * each once and spawns it by its absolute path. Only hits are kept: a tool installed while the
 * daemon runs (apt-get install xfsprogs) is found by the next call. A PATH changed after a tool was
 * found is not seen for that tool; the daemon does not change its PATH.
 */
export class ToolPaths {
  private readonly found = new Map<string, string>();

  constructor(
    private readonly searchPath: () => string = () => process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    private readonly isExecutableFile: (path: string) => boolean = executableFile,
  ) {}

  /** The absolute path of `name`, or undefined when no PATH directory has it. */
  resolve(name: string): string | undefined {
    if (name.includes('/')) return name; // a path already: spawned as given, as execvp would
    const known = this.found.get(name);
    if (known !== undefined) return known;
    for (const dir of this.searchPath().split(delimiter)) {
      // A relative entry ("." or empty) would make the tool depend on the working directory.
      if (!isAbsolute(dir)) continue;
      const candidate = join(dir, name);
      if (this.isExecutableFile(candidate)) {
        this.found.set(name, candidate);
        return candidate;
      }
    }
    return undefined;
  }

  /** Drops what is known of `name` (its file went away: an upgrade moved it). */
  forget(name: string): void {
    this.found.delete(name);
  }
}

function executableFile(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * Runs each command with node's own child_process (a library here cost ~100 ms of start-up on every
 * flexvolume call): no shell, stdin closed, LC_ALL=C, output collected, one deadline. Tools are
 * spawned by the absolute path `tools` found for them, under their usual name as argv[0].
 */
export class ProcessRunner implements CommandRunner {
  constructor(private readonly tools: ToolPaths = new ToolPaths()) {}

  async run(command: string, args: readonly string[], opts: RunOptions): Promise<CommandResult> {
    const path = this.tools.resolve(command);
    if (path === undefined) throw notInstalled(command, 'ENOENT, found in no directory of PATH');
    try {
      return await this.spawnAt(path, command, args, opts);
    } catch (err) {
      // The file found earlier is gone (the package was upgraded or removed): look once more, and
      // run it from where it is now. A spawn that failed this way never started a process.
      if (!(err instanceof SpawnFailure) || err.code !== 'ENOENT' || path === command) throw unwrap(err);
      this.tools.forget(command);
      const again = this.tools.resolve(command);
      if (again === undefined) throw notInstalled(command, err.message);
      return this.spawnAt(again, command, args, opts).catch((e: unknown) => {
        throw unwrap(e);
      });
    }
  }

  private spawnAt(
    path: string,
    command: string,
    args: readonly string[],
    opts: RunOptions,
  ): Promise<CommandResult> {
    const what = opts.what ?? [command, ...args].join(' ');
    return new Promise<CommandResult>((resolve, reject) => {
      // Its own process group, so that the deadline kills helpers it started too (mount.nfs...):
      // otherwise a child holding our pipes open keeps us waiting long past the deadline.
      const child = spawn(path, [...args], {
        argv0: command, // mkfs.ext4 and friends read their own name
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
        shell: false,
        env: { ...process.env, LC_ALL: 'C' },
      });
      const out = collect(child.stdout);
      const err = collect(child.stderr);
      let settled = false;
      const settle = (fn: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (child.pid !== undefined) untrackChild(child.pid);
        fn();
      };
      // At the deadline the answer is TIMEOUT at once, even while a killed helper's pipes linger.
      const timer = setTimeout(() => {
        killGroup(child.pid);
        settle(() =>
          reject(
            new StowageError(
              'TIMEOUT',
              `${what} did not finish within ${formatMs(opts.timeoutMs)} and was killed`,
            ),
          ),
        );
      }, opts.timeoutMs);
      if (child.pid !== undefined) trackChild(child.pid);
      child.on('error', (e: NodeJS.ErrnoException) => settle(() => reject(new SpawnFailure(command, e))));
      child.on('close', (code, signal) =>
        settle(() => {
          const stdout = stripFinalNewline(out());
          const stderr = stripFinalNewline(err());
          if (signal) {
            reject(new StowageError('INTERNAL', `${what} was killed by ${signal}`));
            return;
          }
          const exitCode = code ?? -1;
          if (exitCode !== 0 && !(opts.okExitCodes ?? []).includes(exitCode)) {
            reject(commandFailed(what, { stdout, stderr, exitCode }));
            return;
          }
          resolve({ stdout, stderr, exitCode });
        }),
      );
    });
  }
}

/** The process could not be started at all (node's 'error' event): kept apart for one retry. */
class SpawnFailure extends Error {
  readonly code: string | undefined;

  constructor(
    readonly command: string,
    reason: NodeJS.ErrnoException,
  ) {
    super(reason.message);
    this.code = reason.code;
  }
}

function unwrap(err: unknown): unknown {
  if (!(err instanceof SpawnFailure)) return err;
  if (err.code === 'ENOENT') return notInstalled(err.command, err.message);
  return new StowageError('INTERNAL', `cannot run ${err.command}: ${err.message}`);
}

function notInstalled(command: string, why: string): StowageError {
  const pkg = PACKAGE_OF[command];
  return new StowageError(
    'UNAVAILABLE',
    `cannot run ${command}: ${why}${pkg ? ` (install it with: apt-get install ${pkg})` : ''}`,
  );
}

/** What a tool said about its failure: its last lines (stderr, else stdout), trimmed, on one line. */
export function toolWords(res: Pick<CommandResult, 'stdout' | 'stderr'>): string {
  return (res.stderr.trim() || res.stdout.trim())
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .slice(-3)
    .join('; ');
}

/**
 * A command that ran and exited nonzero: INTERNAL until a caller who knows what the tool was asked
 * (LinuxMounter for an NFS mount) finds it is the user's to fix. `details` keeps the exit code and
 * the tool's own output for that caller.
 */
export function commandFailed(what: string, res: CommandResult): StowageError {
  return new StowageError(
    'INTERNAL',
    `${what} failed (exit ${res.exitCode}): ${toolWords(res) || 'no output'}`,
    {
      details: { exitCode: res.exitCode, stderr: res.stderr, stdout: res.stdout },
    },
  );
}

function collect(stream: Readable): () => string {
  const chunks: Buffer[] = [];
  let size = 0;
  stream.on('data', (c: Buffer) => {
    if (size >= MAX_OUTPUT_BYTES) return;
    chunks.push(c);
    size += c.length;
  });
  return () => Buffer.concat(chunks).toString('utf8');
}

/** As a shell's $(...) does: one trailing newline is not part of the answer. */
function stripFinalNewline(s: string): string {
  return s.endsWith('\r\n') ? s.slice(0, -2) : s.endsWith('\n') ? s.slice(0, -1) : s;
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
