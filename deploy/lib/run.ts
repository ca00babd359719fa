import { execa } from 'execa';

/**
 * Runs a build step: an argv array (never a shell), output shown to the operator, a deadline.
 * A failure names the command and the tail of what it printed, so `npm run image` says what broke.
 */
export async function run(
  file: string,
  args: readonly string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string; quiet?: boolean } = {},
): Promise<string> {
  const res = await execa(file, args, {
    reject: false,
    all: true,
    timeout: opts.timeoutMs ?? 600_000,
    env: opts.env,
    cwd: opts.cwd,
    stdin: 'ignore',
  });
  if (!opts.quiet && res.all) process.stderr.write(`${res.all}\n`);
  if (res.exitCode !== 0 || res.timedOut) {
    const why = res.timedOut
      ? `timed out after ${(opts.timeoutMs ?? 600_000) / 1000} s`
      : `exit ${res.exitCode}`;
    const tail = (res.all ?? '').split('\n').slice(-20).join('\n');
    throw new Error(`${file} ${args.join(' ')} failed (${why}):\n${tail}`);
  }
  return res.stdout;
}

/** The docker CLI: /usr/bin/docker from docker.io, not a client-only docker elsewhere on PATH. */
export const DOCKER = process.env.STOWAGE_DOCKER_CLI ?? '/usr/bin/docker';

/** `-H host` for a dockerd other than $DOCKER_HOST's (the test suite's private ones). */
export function hostArgs(host: string | undefined): string[] {
  return host ? ['-H', host] : [];
}
