import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa, type ResultPromise } from 'execa';
import type { TestProject } from 'vitest/node';
import { within } from '../helpers/deadline.js';
import { DOCKER_CLI, TEST_IMAGE } from './env.js';

/**
 * What the suite needs on a fresh Debian machine, installed and started here so that `npm test`
 * is the whole story: apt packages, the compiled CLI, a private dockerd (its own data root and
 * socket, so a developer's Docker is untouched) and a tiny busybox image built locally. Nothing is
 * skipped: a missing piece fails the run with what to do.
 */
const APT_PACKAGES: Record<string, string> = {
  '/usr/sbin/dockerd': 'docker.io',
  '/bin/busybox': 'busybox-static',
  '/usr/sbin/mkfs.xfs': 'xfsprogs',
  '/usr/sbin/losetup': 'mount',
  '/usr/sbin/mkfs.ext4': 'e2fsprogs',
};
const APPLETS = [
  'sh',
  'ls',
  'cat',
  'echo',
  'mkdir',
  'touch',
  'sleep',
  'rm',
  'stat',
  'test',
  'grep',
  'dd',
  'sync',
  'wc',
];

let dockerd: ResultPromise | undefined;
let workDir: string | undefined;

export async function setup(project: TestProject): Promise<void> {
  if (process.getuid?.() !== 0) {
    throw new Error(
      'the stowage test suite must run as root (loop devices, mounts, dockerd): run it as root or with sudo',
    );
  }
  await ensurePackages();
  // The e2e tests run the compiled CLI exactly as `npm start` does.
  await execa('npx', ['tsc', '-b', 'tsconfig.build.json'], { stdio: 'inherit', timeout: 180_000 });

  workDir = await mkdtemp(join(tmpdir(), 'stowage-dockerd-'));
  const sock = join(workDir, 'docker.sock');
  dockerd = execa(
    '/usr/sbin/dockerd',
    [
      '--iptables=false',
      '--bridge=none',
      '--data-root',
      join(workDir, 'root'),
      '--exec-root',
      join(workDir, 'exec'),
      '--pidfile',
      join(workDir, 'dockerd.pid'),
      '-H',
      `unix://${sock}`,
    ],
    {
      reject: false,
      stdin: 'ignore',
      stdout: { file: join(workDir, 'dockerd.log') },
      stderr: { file: join(workDir, 'dockerd.err.log') },
    },
  );
  const deadline = Date.now() + 60_000;
  for (let delay = 50; ; delay = Math.min(delay * 2, 1000)) {
    const info = await execa(DOCKER_CLI, ['-H', `unix://${sock}`, 'info', '--format', '{{.ServerVersion}}'], {
      reject: false,
      timeout: 10_000,
    });
    if (info.exitCode === 0) break;
    if (dockerd.exitCode !== null || Date.now() > deadline) {
      const log = await readFile(join(workDir, 'dockerd.err.log'), 'utf8').catch(() => '');
      throw new Error(`dockerd did not become ready within 60 s:\n${log.split('\n').slice(-15).join('\n')}`);
    }
    await sleep(delay);
  }
  await importBusybox(sock, workDir);
  project.provide('dockerHost', `unix://${sock}`);
}

export async function teardown(): Promise<void> {
  if (dockerd && workDir) {
    dockerd.kill('SIGTERM');
    const stopped = await within(
      dockerd.then(() => true),
      20_000,
    );
    if (!stopped) {
      dockerd.kill('SIGKILL');
      await dockerd;
    }
  }
  if (workDir) {
    // dockerd unmounts its overlays on a clean stop; a leftover would make rm fail loudly.
    const mounts = await readFile('/proc/self/mountinfo', 'utf8');
    for (const line of mounts.split('\n')) {
      const mp = line.split(' ')[4];
      if (mp?.startsWith(workDir)) await execa('umount', ['-l', mp], { reject: false });
    }
    await rm(workDir, { recursive: true, force: true });
  }
}

async function ensurePackages(): Promise<void> {
  const missing = [
    ...new Set(
      Object.entries(APT_PACKAGES)
        .filter(([bin]) => !existsSync(bin))
        .map(([, pkg]) => pkg),
    ),
  ];
  if (missing.length === 0) return;
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const opts = { env, stdio: 'inherit' as const, timeout: 900_000, reject: false };
  process.stderr.write(`stowage tests: installing ${missing.join(' ')} with apt-get\n`);
  await execa('apt-get', ['update', '-qq'], opts);
  const res = await execa('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], opts);
  if (res.exitCode !== 0) {
    throw new Error(
      `apt-get install ${missing.join(' ')} failed; install them by hand and run the tests again`,
    );
  }
}

async function importBusybox(sock: string, dir: string): Promise<void> {
  const rootfs = join(dir, 'busybox-rootfs');
  await mkdir(join(rootfs, 'bin'), { recursive: true });
  await mkdir(join(rootfs, 'tmp'), { recursive: true });
  await copyFile('/bin/busybox', join(rootfs, 'bin', 'busybox'));
  for (const applet of APPLETS) await symlink('busybox', join(rootfs, 'bin', applet));
  const tarball = join(dir, 'busybox.tar');
  await execa('tar', ['-C', rootfs, '-cf', tarball, '.'], { timeout: 60_000 });
  const res = await execa(DOCKER_CLI, ['-H', `unix://${sock}`, 'import', tarball, TEST_IMAGE], {
    reject: false,
    timeout: 60_000,
  });
  if (res.exitCode !== 0) throw new Error(`docker import of the busybox test image failed: ${res.stderr}`);
}
