import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, cp, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StowageError } from '../src/base/errors.js';
import { FLEX_DRIVERS, VENDOR } from './capabilities.js';

export const DEFAULT_PLUGIN_DIR = '/usr/libexec/kubernetes/kubelet-plugins/volume/exec';

export interface InstallOptions {
  /** kubelet's --volume-plugin-dir (and the controller-manager's --flex-volume-plugin-dir). */
  dir: string;
  drivers: string[];
  /** node on the machine that runs the driver; the wrapper falls back to `node` on PATH. */
  node: string;
  /**
   * Copy the node running this command to <dir>/.stowage-node/node and use that: the machine then
   * needs nothing but the mount tools (the DaemonSet installs this way from its image).
   */
  copyNode?: boolean;
  /** The built bundle (dist/flexvolume-bundle); found next to this module by default. */
  bundleDir?: string;
}

export interface InstalledDriver {
  driver: string;
  executable: string;
}

const SAFE_PATH = /^\/[A-Za-z0-9/._+-]*$/;

/** The Node.js versions stowage runs on, as the wrapper and the install's refusals say them. */
export const SUPPORTED_NODE =
  'Node.js 22 or 24 (20.5 or later still runs, but reached its end of life in April 2026)';

/**
 * Whether stowage runs on Node.js `version` (e.g. "v22.23.5"): 22 and 24 are tested on every run
 * of the suite; 20 from 20.5 (import.meta.dirname, the test runner's floor) still is, though it is
 * out of support; odd releases and versions not yet tested are not. Kept in step with "engines"
 * in package.json (a test compares them).
 */
export function nodeSupport(version: string): 'supported' | 'end-of-life' | 'unsupported' {
  const [major = 0, minor = 0] = version.replace(/^v/, '').split('.').map(Number);
  if (major === 22 || major === 24) return 'supported';
  if (major === 20 && minor >= 5) return 'end-of-life';
  return 'unsupported';
}

/** NODE_MODULE_VERSION (the native addon ABI) -> the Node.js major that has it, for messages. */
const ABI_MAJOR: Record<string, string> = { '115': '20', '127': '22', '137': '24' };

/**
 * Installs `<dir>/stowage~<driver>/<driver>` for each driver, atomically as kubelet requires (it
 * watches the directory and ignores dot-names): a first install is written in a dot-directory and
 * renamed into place; an upgrade adds the new version as a dot-directory inside the driver's
 * directory and then renames the new wrapper over the old one, so every call sees one whole version.
 * The previous version stays until the next upgrade, for calls that were running during this one.
 */
export async function installFlexvolume(opts: InstallOptions): Promise<InstalledDriver[]> {
  const bundle = opts.bundleDir ?? join(dirname(fileURLToPath(import.meta.url)), '..', 'flexvolume-bundle');
  if (!existsSync(join(bundle, 'stowage-flexvolume.mjs'))) {
    throw new StowageError(
      'NOT_FOUND',
      `the flexvolume bundle is missing in ${bundle}; run \`npm run build\` first`,
    );
  }
  for (const d of opts.drivers) {
    if (!FLEX_DRIVERS[d]) {
      throw new StowageError(
        'UNKNOWN_DRIVER',
        `unknown driver ${JSON.stringify(d)}; flexvolume drivers: ${Object.keys(FLEX_DRIVERS).join(', ')}`,
      );
    }
  }
  for (const [what, p] of [
    ['--dir', opts.dir],
    ['--node', opts.node],
  ] as const) {
    if (!SAFE_PATH.test(p))
      throw new StowageError(
        'INVALID_ARGUMENT',
        `${what} must be an absolute path of plain characters, not ${JSON.stringify(p)}`,
      );
  }
  // The wrapper runs the node that runs this install: check now what would otherwise fail in
  // every call kubelet makes.
  if (opts.copyNode || opts.node === process.execPath) await checkThisNode(bundle, opts.copyNode === true);
  await mkdir(opts.dir, { recursive: true, mode: 0o755 });
  const node = opts.copyNode ? await copyNode(opts.dir) : opts.node;
  const version = `.v-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  const installed: InstalledDriver[] = [];
  for (const driver of opts.drivers) {
    const final = join(opts.dir, `${VENDOR}~${driver}`);
    const staging = join(opts.dir, `.${VENDOR}~${driver}${version}`);
    await rm(staging, { recursive: true, force: true });
    try {
      await mkdir(staging, { mode: 0o755 });
      await cp(bundle, join(staging, version), { recursive: true });
      await writeFile(join(staging, driver), wrapper(driver, version, node), { mode: 0o755 });
      await chmod(join(staging, driver), 0o755);
      if (!existsSync(final)) {
        await rename(staging, final);
      } else {
        await rename(join(staging, version), join(final, version));
        await rename(join(staging, driver), join(final, driver));
        await pruneVersions(final, version);
      }
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
    installed.push({ driver, executable: join(final, driver) });
  }
  return installed;
}

/**
 * Refuses a node stowage does not run on, and one that cannot load the bundle's SQLite addon:
 * better_sqlite3.node is compiled for one NODE_MODULE_VERSION (that of the node that built the
 * bundle), and under any other node every call that opens the store fails.
 */
async function checkThisNode(bundle: string, copying: boolean): Promise<void> {
  const how = copying ? '--copy-node would copy' : 'the driver would run';
  const fix = copying
    ? 'run the install with such a node'
    : 'run the install with such a node or pass --node PATH';
  if (nodeSupport(process.version) === 'unsupported') {
    throw new StowageError(
      'INVALID_ARGUMENT',
      `${how} ${process.execPath} (${process.version}), which stowage does not run on: it needs ${SUPPORTED_NODE}; ${fix}`,
    );
  }
  const addon = join(bundle, 'better_sqlite3.node');
  if (!existsSync(addon)) return;
  const abi = /node_register_module_v(\d+)/.exec((await readFile(addon)).toString('latin1'))?.[1];
  const own = process.versions.modules;
  if (abi && abi !== own) {
    const built = ABI_MAJOR[abi] ? `Node.js ${ABI_MAJOR[abi]}` : `NODE_MODULE_VERSION ${abi}`;
    throw new StowageError(
      'INVALID_ARGUMENT',
      `the bundle's SQLite addon (${addon}) was built for ${built}, but ${how} ${process.execPath} ` +
        `(${process.version}, NODE_MODULE_VERSION ${own}), which cannot load it: every call that opens ` +
        `the store would fail. Run the install with the node that built the bundle, or rebuild it with ` +
        `this one (npm ci && npm run build)`,
    );
  }
}

/** The node binary in a dot-directory kubelet ignores, replaced atomically like the drivers. */
async function copyNode(dir: string): Promise<string> {
  const target = join(dir, '.stowage-node', 'node');
  await mkdir(dirname(target), { recursive: true, mode: 0o755 });
  const tmp = `${target}.tmp-${process.pid}`;
  await copyFile(process.execPath, tmp);
  await chmod(tmp, 0o755);
  await rename(tmp, target);
  return target;
}

/** Keeps the current version and the one before it. */
async function pruneVersions(dir: string, current: string): Promise<void> {
  const versions = (await readdir(dir)).filter((n) => n.startsWith('.v-') && n !== current).sort();
  for (const old of versions.slice(0, -1)) await rm(join(dir, old), { recursive: true, force: true });
}

function wrapper(driver: string, version: string, node: string): string {
  return `#!/bin/sh
# stowage flexvolume driver ${VENDOR}/${driver}, installed by \`stowage flexvolume install\`.
# kubelet parses stdout and stderr together as one JSON reply: node runs with its warnings off.
node=${node}
if [ ! -x "$node" ]; then node=$(command -v node 2>/dev/null) || node=; fi
if [ -z "$node" ]; then
  echo '{"status":"Failure","message":"node is not installed on this machine: install ${SUPPORTED_NODE}, or reinstall with stowage flexvolume install --copy-node or --node PATH"}'
  exit 1
fi
# The directory of this script without running dirname: kubelet starts this once per call.
dir=\${0%/*}
[ "$dir" = "$0" ] && dir=.
exec "$node" --no-warnings "$dir/${version}/stowage-flexvolume.mjs" ${driver} "$@"
`;
}
