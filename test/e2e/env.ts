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

/**
 * Removes the containers no compose project in `projects` started: what a failed test left
 * running. Throws naming the first docker command that failed.
 */
export async function removeContainersOutside(projects: ReadonlySet<string>): Promise<void> {
  const ok = <R extends { exitCode: number; stderr: string }>(what: string, res: R): R => {
    if (res.exitCode !== 0) throw new Error(`${what} exited ${res.exitCode}: ${res.stderr}`);
    return res;
  };
  const ps = ok('docker ps', await docker(['ps', '-aq', '--no-trunc']));
  for (const id of ps.stdout.split('\n').filter(Boolean)) {
    const label = '{{index .Config.Labels "com.docker.compose.project"}}';
    const project = await docker(['inspect', '--format', label, id]);
    if (!projects.has(project.stdout))
      ok(`docker rm -f ${id}`, await docker(['rm', '-f', '-v', id], 120_000));
  }
}
