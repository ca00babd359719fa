import { writeSync } from 'node:fs';
import nodeModule from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { killTrackedChildren } from '../src/base/children.js';
import { flexMain } from './main.js';
import { exitCodeOf } from './reply.js';

// kubelet parses stdout and stderr together as exactly one JSON object: one stray line (a library's
// console output, a runtime warning) breaks the call. Only the reply is written; logs go to a file.
const silent = () => undefined;
process.stderr.write = (() => true) as typeof process.stderr.write;
console.log = console.info = console.warn = console.error = console.debug = console.trace = silent;
process.removeAllListeners('warning');
process.on('warning', silent);

const installDir = dirname(fileURLToPath(import.meta.url));
// scripts/bundle-flexvolume.mjs replaces this text with a hash of the bundle's files: the config
// cache next to the bundle (flexvolume/runtime.ts) is used only by the build that wrote it.
// Unbundled (tests), it stays as written and there is no cache.
const BUILD_ID = '@@stowage-flexvolume-build-id@@';
const buildId = /^[0-9a-f]{64}$/.test(BUILD_ID) ? BUILD_ID : undefined;
// Node 22.1+ keeps V8's compiled code of the modules loaded from here on (the call's chunks: the
// config, the store, the driver) in a dot-directory next to the bundle, which kubelet ignores:
// measured on Node 22, a store-opening call 28 ms faster. Node 20 has no such cache; a directory
// that cannot be written only means no cache.
try {
  (nodeModule as { enableCompileCache?: (dir: string) => unknown }).enableCompileCache?.(
    join(installDir, '.compile-cache'),
  );
} catch {
  // no cache: the call works the same, only slower
}

const [driver, ...args] = process.argv.slice(2);
const reply = await flexMain(driver, args, {
  dir: installDir,
  ...(buildId ? { buildId } : {}),
  exitsAfter: true,
});
// Commands still running belong to a call that gave up at its deadline: they must not finish the
// job (a late mount) after the reply said it failed.
killTrackedChildren();
writeSync(1, `${JSON.stringify(reply)}\n`);
process.exit(exitCodeOf(reply));
