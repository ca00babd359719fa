// Bundles the flexvolume executable: kubelet's machines (and the controller-manager's container)
// have node and the mount tools, not our node_modules. Output in dist/flexvolume-bundle/:
// stowage-flexvolume.mjs (the entry), chunks/ (loaded on demand: one driver and its SDK per call)
// and better_sqlite3.node (the one native addon, which cannot be inlined).
import { createHash } from 'node:crypto';
import { copyFile, cp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { ESM_BUNDLE_BANNER } from './esm-bundle-banner.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'flexvolume-bundle');
const require = createRequire(import.meta.url);

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
await build({
  entryPoints: { 'stowage-flexvolume': join(root, 'flexvolume', 'bin.ts') },
  bundle: true,
  platform: 'node',
  // The ESM builds of dependencies (the AWS SDK's dist-es) split and load lazily as ES modules.
  mainFields: ['module', 'main'],
  target: 'node20',
  format: 'esm',
  splitting: true,
  outdir: out,
  outExtension: { '.js': '.mjs' },
  chunkNames: 'chunks/[name]-[hash]',
  minify: true,
  legalComments: 'linked',
  logLevel: 'warning',
  banner: { js: ESM_BUNDLE_BANNER },
});
// etcd3's code lands in chunks/ and reads `${__dirname}/../proto/rpc.proto`.
await cp(join(dirname(require.resolve('etcd3/package.json')), 'proto'), join(out, 'proto'), {
  recursive: true,
});
const addon = join(
  dirname(require.resolve('better-sqlite3/package.json')),
  'build',
  'Release',
  'better_sqlite3.node',
);
await copyFile(addon, join(out, 'better_sqlite3.node'));

// The build's identity, stamped into the entry (flexvolume/bin.ts): a hash of every file of the
// bundle. The executable's config cache is used only by the build that wrote it, since another
// stowage may read the same config file differently.
const PLACEHOLDER = '@@stowage-flexvolume-build-id@@';
const hash = createHash('sha256');
const files = (await readdir(out, { recursive: true, withFileTypes: true }))
  .filter((f) => f.isFile())
  .map((f) => join(f.parentPath, f.name))
  .sort();
for (const file of files) {
  const bytes = await readFile(file);
  hash.update(`${file.slice(out.length)}\0${bytes.length}\0`);
  hash.update(bytes);
}
const entry = join(out, 'stowage-flexvolume.mjs');
const text = await readFile(entry, 'utf8');
if (!text.includes(PLACEHOLDER)) throw new Error(`${entry}: the build id placeholder is missing`);
await writeFile(entry, text.replaceAll(PLACEHOLDER, hash.digest('hex')));
