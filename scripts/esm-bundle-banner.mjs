// The first line of an ESM bundle made by esbuild from code with CommonJS dependencies
// (better-sqlite3, etcd3, grpc-js): they call require() and read __filename and __dirname (etcd3
// loads its .proto files from ../proto next to it), which ESM output has none of. Used by
// scripts/bundle-flexvolume.mjs and by the tests that bundle a program for the qemu guest.
export const ESM_BUNDLE_BANNER = [
  "import { createRequire as __cr } from 'node:module';",
  "import { dirname as __dn } from 'node:path';",
  "import { fileURLToPath as __fu } from 'node:url';",
  'const require = __cr(import.meta.url);',
  'const __filename = __fu(import.meta.url);',
  'const __dirname = __dn(__filename);',
].join(' ');
