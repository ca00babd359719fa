// Which node ran what during a run, read back from record-node.cjs's lines.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Process kinds a run with the e2e files must have seen, each on the Node under test. */
const REQUIRED = ['vitest', 'daemon', 'cli', 'flexvolume'];

/**
 * @param {string} recordFile
 * @param {string} version the Node under test, e.g. 22.23.5
 * @param {string} tree the run tree (its flexvolume bundle carries the addon the executable loads)
 * @returns {{ ok: boolean, text: string }}
 */
export function checkRecord(recordFile, version, tree) {
  const lines = existsSync(recordFile) ? readFileSync(recordFile, 'utf8').split('\n').filter(Boolean) : [];
  /** @type {Map<string, number>} */
  const counts = new Map();
  const strangers = [];
  let abi = '';
  for (const line of lines) {
    const rec = JSON.parse(line);
    counts.set(rec.kind, (counts.get(rec.kind) ?? 0) + 1);
    if (rec.version === `v${version}`) abi = rec.abi;
    else strangers.push(`${rec.kind} on ${rec.version} (${rec.execPath})`);
  }
  const problems = [];
  if (strangers.length > 0) {
    problems.push(
      `${strangers.length} node processes ran on another Node: ${[...new Set(strangers)].join('; ')}`,
    );
  }
  for (const kind of REQUIRED) {
    if (!counts.get(kind)) problems.push(`no ${kind} process was recorded`);
  }
  const bundleAbi = addonAbi(join(tree, 'dist', 'flexvolume-bundle', 'better_sqlite3.node'));
  if (!abi || bundleAbi !== abi) {
    problems.push(
      `the flexvolume bundle's better_sqlite3.node is for ABI ${bundleAbi || '?'}, Node ${version} is ${abi || '?'}`,
    );
  }
  const tally = [...counts].map(([kind, n]) => `${n} ${kind}`).join(', ');
  if (problems.length > 0)
    return { ok: false, text: `Node ${version}: ${problems.join('; ')} (seen: ${tally})` };
  return {
    ok: true,
    text:
      `Node ${version} (ABI ${abi}) ran every node process of the run: ${tally}; ` +
      `the flexvolume bundle's better_sqlite3.node is built for ABI ${bundleAbi}`,
  };
}

/** The NODE_MODULE_VERSION an addon was built for, from the registration symbol it exports. */
export function addonAbi(file) {
  if (!existsSync(file)) return '';
  const match = /node_register_module_v(\d+)/.exec(readFileSync(file).toString('latin1'));
  return match?.[1] ?? '';
}
