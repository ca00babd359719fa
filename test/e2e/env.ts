import { existsSync } from 'node:fs';
import { execa } from 'execa';
import { inject } from 'vitest';

declare module 'vitest' {
  export interface ProvidedContext {
    /** unix:// address of the suite's private dockerd (test/e2e/global-setup.ts). */
    dockerHost: string;
  }
}

/** Debian's docker client; a newer one may sit earlier on PATH (testbed.md). */
export const DOCKER_CLI = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';
export const TEST_IMAGE = 'stowage-test:busybox';
export const PLUGIN_DIR = '/run/docker/plugins';

/** Runs the docker CLI against the suite's own dockerd; never throws, returns what happened. */
export async function docker(args: string[], timeoutMs = 60_000) {
  const host = inject('dockerHost');
  const res = await execa(DOCKER_CLI, ['-H', host, ...args], {
    reject: false,
    timeout: timeoutMs,
    stdin: 'ignore',
  });
  return {
    exitCode: res.exitCode ?? -1,
    stdout: String(res.stdout).trim(),
    stderr: String(res.stderr).trim(),
  };
}
