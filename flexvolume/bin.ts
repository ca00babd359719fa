import { writeSync } from 'node:fs';
import { dirname } from 'node:path';
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

const [driver, ...args] = process.argv.slice(2);
const reply = await flexMain(driver, args, dirname(fileURLToPath(import.meta.url)));
// Commands still running belong to a call that gave up at its deadline: they must not finish the
// job (a late mount) after the reply said it failed.
killTrackedChildren();
writeSync(1, `${JSON.stringify(reply)}\n`);
process.exit(exitCodeOf(reply));
