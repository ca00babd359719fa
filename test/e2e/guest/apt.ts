import { existsSync } from 'node:fs';
import { execa } from 'execa';

/**
 * Installs Debian packages for the e2e harnesses, only when a file they provide is missing. Every
 * step is bounded; `apt-get update` runs at most once per process (and only when something is
 * missing). Waits up to 2 min for another apt/dpkg run (e.g. test/e2e/global-setup.ts) to finish.
 */
const APT_ENV = { DEBIAN_FRONTEND: 'noninteractive', NEEDRESTART_MODE: 'l' };
const LOCK_WAIT = ['-o', 'DPkg::Lock::Timeout=120'];

let updated: Promise<void> | undefined;

/** `apt-get update`, once per process. */
export function aptUpdate(timeoutMs = 300_000): Promise<void> {
  updated ??= (async () => {
    const res = await execa('apt-get', [...LOCK_WAIT, '-q', 'update'], {
      env: APT_ENV,
      timeout: timeoutMs,
      reject: false,
      stdin: 'ignore',
    });
    if (res.exitCode !== 0) {
      updated = undefined;
      throw new Error(`apt-get update failed (exit ${res.exitCode ?? res.signal}):\n${tail(res.stderr)}`);
    }
  })();
  return updated;
}

/**
 * `files` maps a path that must exist to the Debian package that provides it. Installs the
 * packages of the missing paths (with --no-install-recommends) and checks the paths afterwards.
 */
export async function aptEnsure(files: Record<string, string>, timeoutMs = 600_000): Promise<string[]> {
  const missing = [
    ...new Set(
      Object.entries(files)
        .filter(([path]) => !existsSync(path))
        .map(([, pkg]) => pkg),
    ),
  ].sort();
  if (missing.length === 0) return [];
  if (process.getuid?.() !== 0) {
    throw new Error(`missing Debian packages ${missing.join(' ')}: run as root so they can be installed`);
  }
  await aptUpdate();
  const res = await execa(
    'apt-get',
    [...LOCK_WAIT, 'install', '-y', '-q', '--no-install-recommends', ...missing],
    {
      env: APT_ENV,
      timeout: timeoutMs,
      reject: false,
      stdin: 'ignore',
    },
  );
  if (res.exitCode !== 0) {
    throw new Error(
      `apt-get install ${missing.join(' ')} failed (exit ${res.exitCode ?? res.signal}):\n${tail(res.stderr)}`,
    );
  }
  const still = Object.keys(files).filter((p) => !existsSync(p));
  if (still.length > 0) throw new Error(`after apt-get install, still missing: ${still.join(' ')}`);
  return missing;
}

function tail(text: string, lines = 20): string {
  return String(text).trim().split('\n').slice(-lines).join('\n');
}
