import { existsSync } from 'node:fs';
import { execa } from 'execa';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A tarball of a busybox root filesystem, for `docker import` (test/e2e/global-setup.ts). */
    busyboxTarball: string;
    /** A directory that lives as long as the whole run: things built once per run (the image). */
    suiteDir: string;
  }
}

/** Debian's docker client; a newer one may sit earlier on PATH (testbed.md). */
export const DOCKER_CLI = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';
export const TEST_IMAGE = 'stowage-test:busybox';
export const PLUGIN_DIR = '/run/docker/plugins';

let dockerHost: string | undefined;

/** Set by startDockerd() (test/e2e/dockerd.ts) for this test file. */
export function setDockerHost(host: string): void {
  dockerHost = host;
}

/** Runs the docker CLI against this file's private dockerd; never throws, returns what happened. */
export async function docker(args: string[], timeoutMs = 60_000) {
  if (!dockerHost) throw new Error('no dockerd for this test file: call startDockerd() in beforeAll');
  const res = await execa(DOCKER_CLI, ['-H', dockerHost, ...args], {
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
