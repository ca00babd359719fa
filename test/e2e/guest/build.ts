import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import {
  chmod,
  copyFile,
  cp,
  lstat,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  realpath,
  rename,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { basename, dirname, join, posix, resolve } from 'node:path';
import { execa } from 'execa';
import { aptEnsure, aptUpdate } from './apt.js';

/**
 * Builds what test/e2e/guest/run.ts boots under qemu (TCG): Debian's cloud kernel, a busybox
 * initramfs whose /init brings up virtio, the network (qemu user-net) and the payload disk, then
 * runs one command and powers off; and the ext4 payload disk carrying node, its libraries, the
 * util-linux + nfs-common mount tools and whatever the caller adds. Recipe: testbed.md.
 */

/** Bump when the initramfs layout or /init changes in a way the cache key would not see. */
const BUILD_FORMAT = 1;
export const BUSYBOX = '/bin/busybox';
export const DEFAULT_MODULES = ['virtio_pci', 'virtio_net', 'virtio_blk', 'virtio_rng', 'ext4', 'nfsv4'];
/** Printed by /init after the command: `STOWAGE-GUEST-END <nonce> exit=<code>`. */
export const END_MARKER = 'STOWAGE-GUEST-END';
export const BEGIN_MARKER = 'STOWAGE-GUEST-BEGIN';
const MULTIARCH = 'lib/x86_64-linux-gnu';

/** Host packages the guest harness needs (files → Debian package). */
export const GUEST_PACKAGES: Record<string, string> = {
  '/usr/bin/qemu-system-x86_64': 'qemu-system-x86',
  [BUSYBOX]: 'busybox-static',
  '/usr/sbin/mkfs.ext4': 'e2fsprogs',
  '/usr/bin/mount': 'mount',
  '/sbin/mount.nfs': 'nfs-common',
};

/**
 * apt-get installs qemu-system-x86, busybox-static, e2fsprogs, mount and nfs-common when missing.
 * nfs-common (for mount.nfs, copied into the guest) pulls in rpcbind; neither is started here.
 */
export function ensureGuestPackages(timeoutMs = 600_000): Promise<string[]> {
  return aptEnsure(GUEST_PACKAGES, timeoutMs);
}

export interface GuestKernelOptions {
  /** Cache root, e.g. /var/cache/stowage-test-guest; entries are `<kernel version>-<hash>/`. */
  cacheDir: string;
  /** Debian package, e.g. linux-image-6.1.0-56-cloud-amd64; default the one linux-image-cloud-amd64 depends on. */
  kernelPackage?: string;
  /** Module names to load at boot (dependencies are added); default DEFAULT_MODULES. */
  modules?: string[];
  /** Bound for the whole build; default 10 min. */
  timeoutMs?: number;
}

export interface GuestKernel {
  kernel: string;
  initrd: string;
  /** e.g. 6.1.0-56-cloud-amd64 */
  kernelVersion: string;
  /** true when taken from the cache without building. */
  cached: boolean;
  dir: string;
}

/** Builds (or takes from the cache) the kernel + initramfs. */
export async function buildGuestKernel(opts: GuestKernelOptions): Promise<GuestKernel> {
  const deadline = Date.now() + (opts.timeoutMs ?? 600_000);
  const left = () => {
    const ms = deadline - Date.now();
    if (ms <= 0) throw new Error('building the guest kernel/initramfs took too long');
    return ms;
  };
  const { pkg, version: pkgVersion } = opts.kernelPackage
    ? { pkg: opts.kernelPackage, version: await candidateVersion(opts.kernelPackage, left()) }
    : await pickKernelPackage(left());
  const m = /^linux-image-(.+)$/.exec(pkg);
  if (!m?.[1]) throw new Error(`not a kernel image package: ${pkg}`);
  const kernelVersion = m[1].replace(/-unsigned$/, '');
  const modules = [...new Set((opts.modules ?? DEFAULT_MODULES).map(modName))];
  const init = initScript(modules);
  const busybox = await sha256File(BUSYBOX);
  const key = createHash('sha256')
    .update(JSON.stringify({ BUILD_FORMAT, pkg, pkgVersion, modules, init, busybox }))
    .digest('hex')
    .slice(0, 12);
  const cacheDir = resolve(opts.cacheDir);
  const dir = join(cacheDir, `${kernelVersion}-${key}`);
  const result = { kernel: join(dir, 'vmlinuz'), initrd: join(dir, 'initrd.gz'), kernelVersion, dir };
  if (existsSync(join(dir, 'manifest.json'))) return { ...result, cached: true };

  await mkdir(cacheDir, { recursive: true });
  await removeStaleBuilds(cacheDir);
  const tmp = await mkdtemp(join(cacheDir, '.build-'));
  try {
    // apt-get download writes into the cwd; the sandbox user (_apt) cannot write to a 0700 temp dir.
    const dl = await execa(
      'apt-get',
      ['-o', 'APT::Sandbox::User=root', '-q', 'download', `${pkg}=${pkgVersion}`],
      {
        cwd: tmp,
        timeout: left(),
        reject: false,
        stdin: 'ignore',
      },
    );
    if (dl.exitCode !== 0) throw new Error(`apt-get download ${pkg} failed:\n${dl.stderr}`);
    const deb = (await readdir(tmp)).find((f) => f.endsWith('.deb'));
    if (!deb) throw new Error(`apt-get download ${pkg} produced no .deb`);
    const root = join(tmp, 'root');
    await run('dpkg-deb', ['-x', join(tmp, deb), root], left());
    await run(BUSYBOX, ['depmod', '-b', root, kernelVersion], left());
    const modDir = join(root, 'lib/modules', kernelVersion);
    const needed = await resolveModules(modDir, modules);

    const stage = join(tmp, 'initramfs');
    await stageInitramfs(stage, init, kernelVersion);
    const stageMod = join(stage, 'lib/modules', kernelVersion);
    for (const rel of needed) {
      const src = join(modDir, rel);
      const dest = join(stageMod, rel.replace(/\.ko\.(xz|gz|zst)$/, '.ko'));
      await mkdir(dirname(dest), { recursive: true });
      if (rel.endsWith('.ko')) await copyFile(src, dest);
      else await decompress(src, dest, left());
    }
    for (const f of ['modules.builtin', 'modules.builtin.modinfo', 'modules.order']) {
      if (existsSync(join(modDir, f))) await copyFile(join(modDir, f), join(stageMod, f));
    }
    // modules.dep/alias for exactly what is in the initramfs: /init and the kernel's
    // request_module() both go through busybox modprobe.
    await run(BUSYBOX, ['depmod', '-b', stage, kernelVersion], left());

    const out = join(tmp, 'out');
    await mkdir(out);
    await copyFile(join(root, 'boot', `vmlinuz-${kernelVersion}`), join(out, 'vmlinuz'));
    await packCpio(stage, join(out, 'initrd.gz'), left());
    await writeFile(
      join(out, 'manifest.json'),
      `${JSON.stringify({ pkg, pkgVersion, kernelVersion, modules, included: needed, builtAt: new Date().toISOString() }, null, 2)}\n`,
    );
    try {
      await rename(out, dir);
    } catch (e) {
      // Another process built the same entry meanwhile: keep theirs.
      if (!existsSync(join(dir, 'manifest.json'))) throw e;
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return { ...result, cached: false };
}

/** Leftovers of builds that were killed (an hour is far beyond any build's deadline). */
async function removeStaleBuilds(cacheDir: string): Promise<void> {
  for (const e of await readdir(cacheDir)) {
    if (!e.startsWith('.build-')) continue;
    const st = await lstat(join(cacheDir, e)).catch(() => undefined);
    if (st && Date.now() - st.mtimeMs > 3_600_000)
      await rm(join(cacheDir, e), { recursive: true, force: true });
  }
}

/**
 * The kernel package (and version) linux-image-cloud-amd64 points at, else the newest
 * linux-image-6.1.0-*-cloud-amd64 apt knows. Runs `apt-get update` once if apt knows none.
 */
export async function pickKernelPackage(timeoutMs = 120_000): Promise<{ pkg: string; version: string }> {
  for (let attempt = 0; attempt < 2; attempt++) {
    const meta = await execa('apt-cache', ['show', '--no-all-versions', 'linux-image-cloud-amd64'], {
      reject: false,
      timeout: timeoutMs,
    });
    const dep = /^Depends:.*?(linux-image-6\.1\.\d+-\d+-cloud-amd64) \(= ([^)\s]+)\)/m.exec(
      String(meta.stdout),
    );
    if (dep?.[1] && dep[2]) return { pkg: dep[1], version: dep[2] };
    const search = await execa(
      'apt-cache',
      ['search', '--names-only', '^linux-image-6\\.1\\.0-[0-9]+-cloud-amd64$'],
      { reject: false, timeout: timeoutMs },
    );
    const newest = [...String(search.stdout).matchAll(/^(linux-image-6\.1\.0-(\d+)-cloud-amd64) /gm)]
      .map((x) => ({ name: x[1] ?? '', abi: Number(x[2]) }))
      .sort((a, b) => b.abi - a.abi)[0];
    if (newest) return { pkg: newest.name, version: await candidateVersion(newest.name, timeoutMs) };
    if (attempt === 0) await aptUpdate(); // lists not downloaded yet
  }
  throw new Error('apt knows no linux-image-6.1.0-*-cloud-amd64 package');
}

async function candidateVersion(pkg: string, timeoutMs: number): Promise<string> {
  const res = await execa('apt-cache', ['policy', pkg], { reject: false, timeout: timeoutMs });
  const v = /Candidate: (\S+)/.exec(String(res.stdout))?.[1];
  if (!v || v === '(none)') throw new Error(`apt has no candidate for ${pkg}`);
  return v;
}

const modName = (s: string) =>
  basename(s)
    .replace(/\.ko(\.(xz|gz|zst))?$/, '')
    .replace(/-/g, '_');

/** Module files (relative to modDir) for `wanted` and everything they depend on; built-ins skipped. */
async function resolveModules(modDir: string, wanted: string[]): Promise<string[]> {
  const deps = new Map<string, { path: string; deps: string[] }>();
  for (const line of (await readFile(join(modDir, 'modules.dep'), 'utf8')).split('\n')) {
    const [path, rest] = line.split(':');
    if (!path || rest === undefined) continue;
    deps.set(modName(path), { path, deps: rest.trim().split(/\s+/).filter(Boolean) });
  }
  const builtin = new Set(
    (await readFile(join(modDir, 'modules.builtin'), 'utf8').catch(() => ''))
      .split('\n')
      .filter(Boolean)
      .map(modName),
  );
  const out = new Set<string>();
  for (const w of wanted) {
    const entry = deps.get(w);
    if (!entry) {
      if (builtin.has(w)) continue;
      throw new Error(`kernel module ${w} is neither in modules.dep nor built in`);
    }
    out.add(entry.path);
    for (const d of entry.deps) out.add(d);
    // modules.dep lists the full closure, but be safe about partial lists.
    for (const d of entry.deps) for (const dd of deps.get(modName(d))?.deps ?? []) out.add(dd);
  }
  return [...out].sort();
}

async function decompress(src: string, dest: string, timeoutMs: number): Promise<void> {
  const [cmd, args] = src.endsWith('.zst')
    ? ['zstd', ['-dc', src]]
    : src.endsWith('.gz')
      ? [BUSYBOX, ['zcat', src]]
      : [BUSYBOX, ['xzcat', src]];
  await execa(cmd as string, args as string[], { timeout: timeoutMs, stdout: { file: dest } });
}

async function stageInitramfs(stage: string, init: string, kernelVersion: string): Promise<void> {
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'run', 'root']) {
    await mkdir(join(stage, d), { recursive: true });
  }
  for (const d of ['mnt', 'payload', `lib/modules/${kernelVersion}`])
    await mkdir(join(stage, d), { recursive: true });
  await chmod(join(stage, 'tmp'), 0o1777);
  await copyFile(BUSYBOX, join(stage, 'bin/busybox'));
  await chmod(join(stage, 'bin/busybox'), 0o755);
  const list = await execa(BUSYBOX, ['--list-full'], { timeout: 10_000 });
  for (const rel of String(list.stdout).split('\n').filter(Boolean)) {
    if (rel === 'bin/busybox' || rel.includes('..')) continue;
    const link = join(stage, rel);
    if (existsSync(link)) continue;
    await mkdir(dirname(link), { recursive: true });
    await symlink('/bin/busybox', link);
  }
  await writeFile(join(stage, 'init'), init, { mode: 0o755 });
  await writeFile(join(stage, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  await writeFile(join(stage, 'etc/group'), 'root:x:0:\n');
  await writeFile(join(stage, 'etc/hosts'), '127.0.0.1 localhost\n10.0.2.2 nfs-host\n');
  await writeFile(join(stage, 'etc/fstab'), '');
  await symlink('/proc/self/mounts', join(stage, 'etc/mtab'));
}

/** `busybox cpio -o -H newc | gzip -n` with cwd = stage, the file list made here (sorted). */
async function packCpio(stage: string, out: string, timeoutMs: number): Promise<void> {
  const entries: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const e of (await readdir(join(stage, rel), { withFileTypes: true })).sort((a, b) =>
      a.name < b.name ? -1 : 1,
    )) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      entries.push(p);
      if (e.isDirectory()) await walk(p);
    }
  };
  await walk('');
  await execa(BUSYBOX, ['cpio', '-o', '-H', 'newc'], {
    cwd: stage,
    input: `${entries.join('\n')}\n`,
    timeout: timeoutMs,
    stderr: 'ignore', // "N blocks"
  }).pipe('gzip', ['-n', '-6'], { stdout: { file: out }, timeout: timeoutMs });
}

/**
 * The initramfs /init (busybox ash). Kernel cmdline parameters it reads: `stowage.nonce=<hex>`
 * (echoed in the markers) and `stowage.argv=<b64>,<b64>,...` (the command; default
 * `sh /payload/run.sh`). Dotted names are not passed to init's environment by the kernel, so the
 * script parses /proc/cmdline.
 */
export function initScript(modules: string[]): string {
  return `#!/bin/sh
# Generated by test/e2e/guest/build.ts
export PATH=/payload/sbin:/payload/bin:/sbin:/bin:/usr/sbin:/usr/bin
export HOME=/root TERM=dumb NO_COLOR=1
mount -t devtmpfs devtmpfs /dev
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run

arg() { for w in $(cat /proc/cmdline); do case "$w" in "$1"=*) echo "\${w#*=}";; esac; done; }
NONCE=$(arg stowage.nonce)
finish() {
  sync
  echo "${END_MARKER} $NONCE exit=$1"
  poweroff -f
  sleep 10
  exit "$1"
}

for m in ${modules.join(' ')}; do
  modprobe "$m" || echo "stowage-init: modprobe $m failed"
done
hostname stowage-guest
ip link set lo up
{ ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2; } ||
  echo "stowage-init: network setup failed"

i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if ! mount -t ext4 -o ro /dev/vda /payload; then
  echo "stowage-init: cannot mount the payload disk /dev/vda"
  finish 125
fi
# The payload's glibc, libstdc++ etc. serve node and the mount tools (the initramfs is static).
[ -d /payload/lib64 ] && ln -s /payload/lib64 /lib64
if [ -d /payload/${MULTIARCH} ]; then
  mkdir -p /usr/lib
  ln -s /payload/${MULTIARCH} /${MULTIARCH}
  ln -s /payload/${MULTIARCH} /usr/${MULTIARCH}
fi
# Payload executables shadow busybox applets of the same name at every standard path (util-linux
# mount looks for /sbin/mount.nfs4).
for f in /payload/bin/* /payload/sbin/*; do
  [ -e "$f" ] || continue
  for d in /bin /sbin /usr/bin /usr/sbin; do ln -sf "$f" "$d/\${f##*/}"; done
done
for f in /payload/etc/*; do
  [ -e "$f" ] && [ ! -e "/etc/\${f##*/}" ] && ln -s "$f" "/etc/\${f##*/}"
done

cd /root
echo "${BEGIN_MARKER} $NONCE"
ARGV=$(arg stowage.argv)
if [ -n "$ARGV" ]; then
  set --
  IFS=,
  # The trailing "." keeps trailing newlines that $(...) would strip.
  for a in $ARGV; do x=$(echo "$a" | base64 -d; echo .); set -- "$@" "\${x%.}"; done
  unset IFS
  "$@" </dev/null
  rc=$?
elif [ -f /payload/run.sh ]; then
  sh /payload/run.sh </dev/null
  rc=$?
else
  echo "stowage-init: no stowage.argv on the kernel command line and no /payload/run.sh"
  rc=126
fi
finish $rc
`;
}

// ---------------------------------------------------------------------------------------------
// Payload disk

/** Host tools copied into the payload's /sbin (with their libraries): Debian's, as in production. */
export const DEFAULT_TOOLS = ['mount', 'umount', 'findmnt', 'blkid', 'mount.nfs'];

export interface PayloadOptions {
  /** Directory for the image (and a temporary staging tree). */
  dir: string;
  /** Destination inside the payload (relative, e.g. 'app/node_modules/x') → host file or directory. */
  files?: Record<string, string>;
  /** Destination inside the payload → file contents (written 0755, so scripts run). */
  contents?: Record<string, string | Buffer>;
  /** Host executables (names on PATH or absolute) for the payload's /sbin; default DEFAULT_TOOLS. */
  tools?: string[];
  /** Include process.execPath as /payload/bin/node; default true. */
  node?: boolean;
  /** Image file name inside dir; default payload.ext4. */
  name?: string;
  /** Bound for the whole build; default 5 min. */
  timeoutMs?: number;
}

export interface PayloadDisk {
  image: string;
  bytes: number;
}

/**
 * An ext4 image (mkfs.ext4 -d, no mount needed) the guest mounts read-only at /payload:
 * bin/node, sbin/<tools>, lib64/ld-linux-x86-64.so.2, lib/x86_64-linux-gnu/<every library ldd
 * lists for node, the tools and each *.node addon found in the caller's trees>, etc/netconfig
 * (libtirpc, for mount.nfs), plus the caller's files.
 */
export async function buildPayloadDisk(opts: PayloadOptions): Promise<PayloadDisk> {
  const deadline = Date.now() + (opts.timeoutMs ?? 300_000);
  const left = () => {
    const ms = deadline - Date.now();
    if (ms <= 0) throw new Error('building the payload disk took too long');
    return ms;
  };
  await mkdir(opts.dir, { recursive: true });
  const image = join(resolve(opts.dir), opts.name ?? 'payload.ext4');
  const stage = await mkdtemp(join(opts.dir, '.payload-'));
  try {
    const binaries: string[] = [];
    if (opts.node ?? true) {
      await mkdir(join(stage, 'bin'));
      await copyFile(process.execPath, join(stage, 'bin/node'));
      await chmod(join(stage, 'bin/node'), 0o755);
      binaries.push(process.execPath);
    }
    const tools = opts.tools ?? DEFAULT_TOOLS;
    if (tools.length > 0) await mkdir(join(stage, 'sbin'), { recursive: true });
    for (const t of tools) {
      const src = await which(t);
      const dest = join(stage, 'sbin', basename(t));
      await copyFile(await realpath(src), dest);
      await chmod(dest, 0o755);
      binaries.push(src);
      if (basename(t) === 'mount.nfs') {
        for (const alias of ['mount.nfs4', 'umount.nfs', 'umount.nfs4']) {
          await symlink('mount.nfs', join(stage, 'sbin', alias));
        }
        if (existsSync('/etc/netconfig')) {
          await mkdir(join(stage, 'etc'), { recursive: true });
          await copyFile('/etc/netconfig', join(stage, 'etc/netconfig'));
        }
      }
    }
    for (const [dest, src] of Object.entries(opts.files ?? {})) {
      const target = safeJoin(stage, dest);
      await mkdir(dirname(target), { recursive: true });
      await cp(src, target, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
    }
    for (const [dest, text] of Object.entries(opts.contents ?? {})) {
      const target = safeJoin(stage, dest);
      await mkdir(dirname(target), { recursive: true });
      await writeFile(target, text, { mode: 0o755 });
    }
    // Native addons in the caller's trees need their libraries too (better-sqlite3: libstdc++).
    binaries.push(...(await findFiles(stage, (n) => n.endsWith('.node'))));

    const libs = new Map<string, string>(); // destination (relative) → host source
    for (const bin of binaries) {
      for (const lib of await lddLibraries(bin, left())) {
        const dest = lib.startsWith('/lib64/') ? `lib64/${basename(lib)}` : `${MULTIARCH}/${basename(lib)}`;
        libs.set(dest, lib);
      }
    }
    for (const [dest, src] of libs) {
      const target = join(stage, dest);
      await mkdir(dirname(target), { recursive: true });
      if (!existsSync(target)) await copyFile(await realpath(src), target);
    }

    const { bytes, inodes } = await treeSize(stage);
    const size = Math.ceil((bytes * 1.15 + inodes * 512 + 32 * 2 ** 20) / 2 ** 20) * 2 ** 20;
    await rm(image, { force: true });
    const fh = await open(image, 'w');
    await fh.truncate(size);
    await fh.close();
    await run(
      'mkfs.ext4',
      [
        '-q',
        '-F',
        '-L',
        'payload',
        '-b',
        '4096',
        '-m',
        '0',
        '-O',
        '^has_journal',
        '-N',
        String(inodes + 1024),
        '-E',
        'root_owner=0:0',
        '-d',
        stage,
        image,
      ],
      left(),
    );
    return { image, bytes: size };
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

/** The shared libraries `ldd` lists (absolute paths, interpreter included); throws on "not found". */
export async function lddLibraries(file: string, timeoutMs = 30_000): Promise<string[]> {
  const res = await execa('ldd', [file], { reject: false, timeout: timeoutMs });
  const text = `${res.stdout}\n${res.stderr}`;
  if (/not a dynamic executable|statically linked/.test(text)) return [];
  if (res.exitCode !== 0) throw new Error(`ldd ${file} failed: ${text.trim()}`);
  const out: string[] = [];
  for (const line of String(res.stdout).split('\n')) {
    const l = line.trim();
    if (!l || l.startsWith('linux-vdso')) continue;
    if (/=> not found/.test(l)) throw new Error(`ldd ${file}: ${l}`);
    const path = /=> (\/\S+)/.exec(l)?.[1] ?? /^(\/\S+)/.exec(l)?.[1];
    if (path) out.push(path);
  }
  return out;
}

async function which(name: string): Promise<string> {
  if (name.startsWith('/')) {
    if (!existsSync(name)) throw new Error(`${name} is missing`);
    return name;
  }
  for (const d of ['/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
    if (existsSync(join(d, name))) return join(d, name);
  }
  throw new Error(`${name} not found on the host (ensureGuestPackages() installs mount and nfs-common)`);
}

function safeJoin(root: string, rel: string): string {
  const p = posix.normalize(rel.replace(/^\/+/, ''));
  if (p.startsWith('..') || p === '.') throw new Error(`payload path escapes the image: ${rel}`);
  return join(root, p);
}

async function findFiles(root: string, match: (name: string) => boolean): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile() && match(e.name)) out.push(p);
    }
  };
  await walk(root);
  return out;
}

async function treeSize(root: string): Promise<{ bytes: number; inodes: number }> {
  let bytes = 0;
  let inodes = 1;
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir)) {
      const p = join(dir, e);
      const st = await lstat(p);
      inodes++;
      bytes += Math.ceil(st.size / 4096) * 4096 || 4096;
      if (st.isDirectory()) await walk(p);
    }
  };
  await walk(root);
  return { bytes, inodes };
}

async function sha256File(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

async function run(cmd: string, args: string[], timeoutMs: number): Promise<void> {
  const res = await execa(cmd, args, { reject: false, timeout: timeoutMs, stdin: 'ignore' });
  if (res.exitCode !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed (exit ${res.exitCode ?? res.signal}):\n${res.stderr}`);
  }
}

/** Random hex used to tell this boot's markers from anything else on the console. */
export function nonce(): string {
  return randomBytes(8).toString('hex');
}
