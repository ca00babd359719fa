import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type { TestProject } from 'vitest/node';

/**
 * What the suite needs on a fresh Debian machine, installed here so that `npm test` is the whole
 * story: apt packages, the compiled CLI, and a tiny busybox image built locally. Each Docker e2e
 * file starts its own private dockerd (test/e2e/dockerd.ts). Nothing is skipped: a missing piece
 * fails the run with what to do.
 */
const APT_PACKAGES: Record<string, string> = {
  '/usr/sbin/dockerd': 'docker.io',
  '/bin/busybox': 'busybox-static',
  '/usr/sbin/mkfs.xfs': 'xfsprogs',
  '/usr/sbin/losetup': 'mount',
  '/usr/sbin/mkfs.ext4': 'e2fsprogs',
  '/usr/bin/etcd': 'etcd-server',
  '/usr/bin/openssl': 'openssl',
  // The image, plugin, compose and catalog tests (deploy/).
  '/usr/bin/mmdebstrap': 'mmdebstrap',
  '/usr/bin/docker-compose': 'docker-compose',
  '/usr/bin/systemd-analyze': 'systemd',
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
  'true',
];

let workDir: string | undefined;

export async function setup(project: TestProject): Promise<void> {
  if (process.getuid?.() !== 0) {
    throw new Error(
      'the stowage test suite must run as root (loop devices, mounts, dockerd): run it as root or with sudo',
    );
  }
  await ensurePackages();
  // The e2e tests run the compiled CLI exactly as `npm start` does, and the bundled flexvolume
  // executable exactly as `stowage flexvolume install` puts it in kubelet's plugin directory.
  await execa('npm', ['run', '--silent', 'build'], { stdio: 'inherit', timeout: 180_000 });
  workDir = await mkdtemp(join(tmpdir(), 'stowage-suite-'));
  project.provide('busyboxTarball', await busyboxTarball(workDir));
  project.provide('suiteDir', workDir);
}

export async function teardown(): Promise<void> {
  if (workDir) await rm(workDir, { recursive: true, force: true });
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

/** A busybox root filesystem (static busybox + applet links) as a tarball for `docker import`. */
async function busyboxTarball(dir: string): Promise<string> {
  const rootfs = join(dir, 'busybox-rootfs');
  await mkdir(join(rootfs, 'bin'), { recursive: true });
  await mkdir(join(rootfs, 'tmp'), { recursive: true });
  await copyFile('/bin/busybox', join(rootfs, 'bin', 'busybox'));
  for (const applet of APPLETS) await symlink('busybox', join(rootfs, 'bin', applet));
  const tarball = join(dir, 'busybox.tar');
  await execa('tar', ['-C', rootfs, '-cf', tarball, '.'], { timeout: 60_000 });
  return tarball;
}
