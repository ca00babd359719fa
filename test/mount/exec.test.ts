import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isStowageError, type StowageError } from '../../src/base/errors.js';
import { ProcessRunner, ToolPaths } from '../../src/mount/exec.js';
import { within } from '../helpers/deadline.js';
import { failure } from '../helpers/failure.js';

/** ProcessRunner against real processes: argv without a shell, deadlines, and the error mapping. */

const runner = new ProcessRunner();

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'stowage-exec-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('ProcessRunner', () => {
  it('passes every argument literally: no shell expands $(...), ; or quotes', async () => {
    const canary = join(dir, 'x');
    const arg = `a; rm -rf ${canary} $(id) \`id\` "q" 'q' | cat > ${join(dir, 'y')} && touch ${canary}`;
    const res = await runner.run('printf', ['%s', arg], { timeoutMs: 10_000 });
    expect(res).toEqual({ stdout: arg, stderr: '', exitCode: 0 });
    // Nothing the text would have done in a shell happened.
    await expect(rm(canary)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(rm(join(dir, 'y'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('keeps arguments with spaces as one argument each', async () => {
    const res = await runner.run('printf', ['[%s]\n', 'one arg with spaces', '', '  ', '*'], {
      timeoutMs: 10_000,
    });
    expect(res.stdout).toBe('[one arg with spaces]\n[]\n[  ]\n[*]');
  });

  it('runs with LC_ALL=C so tool messages are in English', async () => {
    const res = await runner.run('sh', ['-c', 'printf %s "$LC_ALL"'], { timeoutMs: 10_000 });
    expect(res.stdout).toBe('C');
  });

  it('kills a command that outlives its deadline and throws TIMEOUT naming what it was', async () => {
    const run = runner.run('sleep', ['5'], { timeoutMs: 200, what: 'mount of /dev/loop7' });
    // The outer deadline only keeps a broken kill from hanging the test for the whole sleep.
    const err = await within(failure(run), 4_000);
    expect(err, 'sleep 5 was not killed before it finished').toBeDefined();
    expect(err?.code).toBe('TIMEOUT');
    expect(err?.retryable).toBe(true);
    expect(err?.message).toBe('mount of /dev/loop7 did not finish within 200 ms and was killed');
  });

  it('names the command line in the TIMEOUT message when `what` is not given', async () => {
    const err = await failure(runner.run('sleep', ['5'], { timeoutMs: 100 }));
    expect(err.code).toBe('TIMEOUT');
    expect(err.message).toBe('sleep 5 did not finish within 100 ms and was killed');
  });

  it('a command that does not exist is UNAVAILABLE', async () => {
    const err = await failure(runner.run('stowage-no-such-tool', ['--help'], { timeoutMs: 10_000 }));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.retryable).toBe(true);
    expect(err.message).toMatch(/^cannot run stowage-no-such-tool: .*ENOENT/);
    // No package is known for it, so no install hint is made up.
    expect(err.message).not.toContain('apt-get');
  });

  it('a known tool that is not installed says which package to install', async () => {
    // Make the tools "missing" by running with a PATH holding nothing (restored at once). A runner
    // of its own: tools are looked up once per runner, and another test may have run one already.
    const path = process.env.PATH;
    process.env.PATH = dir;
    const fresh = new ProcessRunner();
    let errs: StowageError[];
    try {
      errs = await Promise.all([
        failure(fresh.run('mkfs.xfs', ['-q', '/dev/null'], { timeoutMs: 10_000 })),
        failure(fresh.run('mkfs.ext4', ['-q', '/dev/null'], { timeoutMs: 10_000 })),
        failure(fresh.run('losetup', ['--find'], { timeoutMs: 10_000 })),
        failure(fresh.run('blkid', ['-p', '/dev/null'], { timeoutMs: 10_000 })),
      ]);
    } finally {
      process.env.PATH = path;
    }
    expect(errs.map((e) => e.code)).toEqual(['UNAVAILABLE', 'UNAVAILABLE', 'UNAVAILABLE', 'UNAVAILABLE']);
    expect(errs[0]?.message).toMatch(
      /^cannot run mkfs\.xfs: .*\(install it with: apt-get install xfsprogs\)$/s,
    );
    expect(errs[1]?.message).toMatch(/\(install it with: apt-get install e2fsprogs\)$/);
    expect(errs[2]?.message).toMatch(/\(install it with: apt-get install mount\)$/);
    expect(errs[3]?.message).toMatch(/\(install it with: apt-get install util-linux\)$/);
  });

  it('a non-zero exit is INTERNAL with the exit code and the last three lines of stderr', async () => {
    const script = 'echo out; for l in one two three four; do echo $l >&2; done; exit 3';
    const err = await failure(runner.run('sh', ['-c', script], { timeoutMs: 10_000, what: 'mkfs of x' }));
    expect(err.code).toBe('INTERNAL');
    expect(err.retryable).toBe(false);
    expect(err.message).toBe('mkfs of x failed (exit 3): two; three; four');
  });

  it('falls back to stdout, then to "no output", when stderr is empty', async () => {
    const out = await failure(runner.run('sh', ['-c', 'echo only stdout; exit 1'], { timeoutMs: 10_000 }));
    expect(out.message).toMatch(/^sh -c .* failed \(exit 1\): only stdout$/);
    const none = await failure(runner.run('false', [], { timeoutMs: 10_000 }));
    expect(none.code).toBe('INTERNAL');
    expect(none.message).toMatch(/^false\s+failed \(exit 1\): no output$/);
  });

  it('returns exit codes listed in okExitCodes instead of throwing', async () => {
    const res = await runner.run('sh', ['-c', 'echo nothing found >&2; exit 2'], {
      timeoutMs: 10_000,
      okExitCodes: [2],
    });
    expect(res).toEqual({ stdout: '', stderr: 'nothing found', exitCode: 2 });
    // Only those: another non-zero code still throws.
    const err = await failure(runner.run('sh', ['-c', 'exit 4'], { timeoutMs: 10_000, okExitCodes: [2] }));
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toContain('(exit 4)');
  });

  it('does not read stdin (a tool that prompts gets EOF instead of hanging)', async () => {
    const res = await runner.run('sh', ['-c', 'read answer; echo "rc=$? [$answer]"'], { timeoutMs: 10_000 });
    expect(res.stdout).toBe('rc=1 []');
  });
});

describe('deadlines and signals (regressions)', () => {
  it('answers TIMEOUT at the deadline even when a child of the command holds its output open', async () => {
    const pidFile = join(dir, 'pid');
    try {
      const run = runner.run('sh', ['-c', `sleep 20 & echo $! > ${pidFile}; wait`], { timeoutMs: 200 });
      const err = await within(
        run.catch((e: unknown) => e),
        5_000,
      );
      expect(err, 'still waiting 5 s after a 200 ms deadline').toBeDefined();
      expect(isStowageError(err, 'TIMEOUT')).toBe(true);
    } finally {
      const pid = Number(await readFile(pidFile, 'utf8').catch(() => ''));
      if (pid > 0) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // the group kill got it
        }
      }
    }
  });

  it('reports a command killed by a signal as INTERNAL, not as a missing tool', async () => {
    const err = await runner.run('sh', ['-c', 'kill -9 $$'], { timeoutMs: 10_000 }).catch((e: unknown) => e);
    expect(isStowageError(err, 'INTERNAL')).toBe(true);
    expect((err as StowageError).message).toContain('SIGKILL');
    expect((err as StowageError).message).not.toContain('cannot run');
  });
});

describe('ToolPaths: each tool looked up in PATH once per process', () => {
  /** A tool named `name` in `dir` that prints which copy ran and the name it was called by. */
  async function tool(toolDir: string, name: string, says: string): Promise<string> {
    await mkdir(toolDir, { recursive: true });
    const path = join(toolDir, name);
    await writeFile(path, `#!/bin/sh\necho "${says} $(basename "$0")"\n`);
    await chmod(path, 0o755);
    return path;
  }

  /** ToolPaths over `dirs`, counting each file it checks. */
  function counted(dirs: string[]) {
    const checked: string[] = [];
    const tools = new ToolPaths(
      () => dirs.join(':'),
      (p) => {
        checked.push(p);
        return existsSync(p);
      },
    );
    return { tools, checked };
  }

  it('resolves a tool once, then spawns it by its absolute path without looking again', async () => {
    const bin = join(dir, 'bin');
    const path = await tool(bin, 'stowage-tool', 'first');
    const { tools, checked } = counted([join(dir, 'empty'), 'relative/dir', bin]);
    const run = new ProcessRunner(tools);
    for (let i = 0; i < 3; i++) {
      expect((await run.run('stowage-tool', [], { timeoutMs: 10_000 })).stdout).toBe('first stowage-tool');
    }
    // Relative PATH entries are never tried; the rest once, for the first call only.
    expect(checked).toEqual([join(dir, 'empty', 'stowage-tool'), path]);
    expect(tools.resolve('stowage-tool')).toBe(path);
  });

  it('does not remember a miss: a tool installed later is found', async () => {
    const bin = join(dir, 'bin');
    const { tools } = counted([bin]);
    const run = new ProcessRunner(tools);
    const err = await failure(run.run('mkfs.xfs', [], { timeoutMs: 10_000 }));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toMatch(
      /^cannot run mkfs\.xfs: .*ENOENT.*\(install it with: apt-get install xfsprogs\)$/,
    );
    await tool(bin, 'mkfs.xfs', 'installed');
    expect((await run.run('mkfs.xfs', [], { timeoutMs: 10_000 })).stdout).toBe('installed mkfs.xfs');
  });

  it('looks again when the file it found has gone, and runs the tool from where it is now', async () => {
    const old = await tool(join(dir, 'sbin'), 'stowage-tool', 'moved');
    const { tools } = counted([join(dir, 'sbin'), join(dir, 'usr-sbin')]);
    const run = new ProcessRunner(tools);
    await run.run('stowage-tool', [], { timeoutMs: 10_000 });
    // An upgrade moves it (usrmerge): the cached path now names nothing.
    await mkdir(join(dir, 'usr-sbin'));
    await rename(old, join(dir, 'usr-sbin', 'stowage-tool'));
    expect((await run.run('stowage-tool', [], { timeoutMs: 10_000 })).stdout).toBe('moved stowage-tool');
    expect(tools.resolve('stowage-tool')).toBe(join(dir, 'usr-sbin', 'stowage-tool'));
  });

  it('spawns a command given as a path as it is', () => {
    const { tools, checked } = counted(['/usr/bin']);
    expect(tools.resolve('/bin/sh')).toBe('/bin/sh');
    expect(checked).toEqual([]);
  });
});
