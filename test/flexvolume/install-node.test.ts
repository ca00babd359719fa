import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { installFlexvolume, nodeSupport } from '../../flexvolume/install.js';
import { failure } from '../helpers/failure.js';

/**
 * Which node the installed flexvolume executable runs: the supported versions, and a refusal
 * (before anything is written) of a node that could not load the bundle's SQLite addon.
 */
const ROOT = join(import.meta.dirname, '..', '..');
let base: string;
let bundle: string;
let pluginDir: string;

/** A bundle whose better_sqlite3.node registers itself for NODE_MODULE_VERSION `abi`. */
async function fakeBundle(abi: string): Promise<void> {
  await mkdir(bundle, { recursive: true });
  await writeFile(join(bundle, 'stowage-flexvolume.mjs'), '');
  await writeFile(join(bundle, 'better_sqlite3.node'), `\u007fELF...node_register_module_v${abi}\0...`);
}

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), 'stowage-flex-node-'));
  bundle = join(base, 'bundle');
  pluginDir = join(base, 'plugins');
});
afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

describe('the node the flexvolume executable runs', () => {
  it('supports 22 and 24, still runs 20 from 20.5 (end of life), and nothing else', () => {
    const cases = {
      'v18.20.4': 'unsupported',
      'v20.4.0': 'unsupported',
      'v20.5.0': 'end-of-life',
      'v20.20.2': 'end-of-life',
      'v21.7.3': 'unsupported',
      'v22.0.0': 'supported',
      'v22.23.5': 'supported',
      'v23.11.1': 'unsupported',
      'v24.22.3': 'supported',
      'v25.2.0': 'unsupported',
    };
    for (const [version, want] of Object.entries(cases)) expect(nodeSupport(version), version).toBe(want);
  });

  it('names the same versions as "engines" in package.json', async () => {
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as {
      engines: { node: string };
    };
    // engines is a list of caret ranges ("^20.5.0 || ^22.0.0 || ^24.0.0"): same major, at least that.
    const ranges = pkg.engines.node.split('||').map((r) => {
      const m = /^\^(\d+)\.(\d+)\.(\d+)$/.exec(r.trim());
      if (!m) throw new Error(`engines.node: expected caret ranges joined by ||, got ${JSON.stringify(r)}`);
      return m.slice(1).map(Number) as [number, number, number];
    });
    const inEngines = (v: string) => {
      const [major, minor] = v.slice(1).split('.').map(Number) as [number, number];
      return ranges.some(([M, m]) => major === M && minor >= m);
    };
    for (const v of [
      'v18.20.4',
      'v20.4.0',
      'v20.5.0',
      'v21.7.3',
      'v22.0.0',
      'v23.11.1',
      'v24.22.3',
      'v25.2.0',
      'v26.0.0',
    ]) {
      expect(inEngines(v), v).toBe(nodeSupport(v) !== 'unsupported');
    }
  });

  it('--copy-node refuses a node that cannot load the bundle’s SQLite addon, and installs nothing', async () => {
    const other = process.versions.modules === '127' ? '137' : '127';
    await fakeBundle(other);
    const err = await failure(
      installFlexvolume({
        dir: pluginDir,
        drivers: ['local'],
        node: '/usr/bin/node',
        copyNode: true,
        bundleDir: bundle,
      }),
    );
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toContain(`built for Node.js ${other === '127' ? '22' : '24'}`);
    expect(err.message).toContain(`${process.version}, NODE_MODULE_VERSION ${process.versions.modules}`);
    expect(err.message).toContain('npm run build');
    expect(existsSync(pluginDir)).toBe(false);
  });

  it('refuses the same when the wrapper would run this node without copying it', async () => {
    await fakeBundle(process.versions.modules === '115' ? '127' : '115');
    const err = await failure(
      installFlexvolume({ dir: pluginDir, drivers: ['local'], node: process.execPath, bundleDir: bundle }),
    );
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toContain('the driver would run');
    expect(existsSync(pluginDir)).toBe(false);
  });

  it('--copy-node installs the node running the install when the addon is built for it', async () => {
    await fakeBundle(process.versions.modules);
    const [installed] = await installFlexvolume({
      dir: pluginDir,
      drivers: ['local'],
      node: '/usr/bin/node',
      copyNode: true,
      bundleDir: bundle,
    });
    const copied = join(pluginDir, '.stowage-node', 'node');
    expect(await readFile(installed!.executable, 'utf8')).toContain(`node=${copied}\n`);
    const { stdout } = await promisify(execFile)(copied, ['-p', 'process.version']);
    expect(stdout.trim()).toBe(process.version);
  });

  it('the wrapper on a machine without node says which versions to install, as one JSON reply', async () => {
    await fakeBundle(process.versions.modules);
    const [installed] = await installFlexvolume({
      dir: pluginDir,
      drivers: ['local'],
      node: '/nonexistent/node',
      bundleDir: bundle,
    });
    const res = await promisify(execFile)('/bin/sh', [installed!.executable, 'init'], {
      env: { PATH: '/nonexistent' },
    }).catch((e: { stdout: string; code: number }) => e);
    expect(res).toMatchObject({ code: 1 });
    const reply = JSON.parse(res.stdout) as { status: string; message: string };
    expect(reply.status).toBe('Failure');
    expect(reply.message).toContain('Node.js 22 or 24');
    expect(reply.message).toContain('end of life');
    expect(await readdir(pluginDir)).toEqual(['stowage~local']);
  });
});
