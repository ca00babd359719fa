// Preloaded into every node process of a run on another Node (NODE_OPTIONS=--require): appends
// one line naming the node that ran and what it ran, so the run can prove that the daemon, the CLI
// and the flexvolume executable ran on the Node under test. It writes only to its own file (a
// flexvolume call must print exactly one JSON object) and records no arguments: a flexvolume
// call's options can carry secrets.
const { appendFileSync } = require('node:fs');

const file = process.env.STOWAGE_NODE_RECORD;
if (file) {
  const script = process.argv[1] ?? '';
  let kind = 'other';
  if (script.endsWith('/bin/stowage.js')) kind = process.argv.includes('daemon') ? 'daemon' : 'cli';
  else if (script.endsWith('/stowage-flexvolume.mjs')) kind = 'flexvolume';
  else if (script.includes('/vitest/')) kind = 'vitest';
  else if (/\/npm(-cli\.js)?$/.test(script)) kind = 'npm';
  else if (/\/tsc$|\/typescript\/bin\/tsc$/.test(script)) kind = 'tsc';
  const line = { kind, version: process.version, abi: process.versions.modules, execPath: process.execPath };
  try {
    appendFileSync(file, `${JSON.stringify(line)}\n`);
  } catch {
    // A record that cannot be written shows as a missing count in the run's summary.
  }
}
