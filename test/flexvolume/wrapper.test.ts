import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { installFlexvolume } from '../../flexvolume/install.js';

/**
 * The installed sh wrapper finds its version's bundle next to itself however kubelet (or a person)
 * starts it, and starts node with nothing else on the way: kubelet runs it once per call, and a
 * `$(dirname "$0")` costs a fork and an exec (~2 ms) on every one.
 */
let base: string;
let bundle: string;
let pluginDir: string;

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), 'stowage-flex-wrapper-'));
  bundle = join(base, 'bundle');
  pluginDir = join(base, 'plugins');
  await mkdir(bundle, { recursive: true });
  // A bundle that says which file node ran and with which arguments.
  await writeFile(
    join(bundle, 'stowage-flexvolume.mjs'),
    "import { fileURLToPath } from 'node:url';\n" +
      'process.stdout.write(JSON.stringify({ file: fileURLToPath(import.meta.url), args: process.argv.slice(2) }));\n',
  );
  await writeFile(
    join(bundle, 'better_sqlite3.node'),
    `\u007fELF...node_register_module_v${process.versions.modules}\0...`,
  );
});

afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

async function installLocal(): Promise<string> {
  const [installed] = await installFlexvolume({
    dir: pluginDir,
    drivers: ['local'],
    node: process.execPath,
    bundleDir: bundle,
  });
  return installed!.executable;
}

async function run(
  file: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<{ file: string; args: string[] }> {
  const { stdout } = await promisify(execFile)('/bin/sh', [file, ...args], {
    cwd: opts.cwd ?? base,
    env: opts.env ?? { PATH: '/nonexistent' },
  });
  return JSON.parse(stdout) as { file: string; args: string[] };
}

describe('the flexvolume wrapper', () => {
  it("runs its version's bundle with the driver and kubelet's arguments, needing nothing on PATH", async () => {
    const executable = await installLocal();
    const got = await run(executable, ['mount', '/var/lib/kubelet/pods/x', '{"a":"b"}']);
    expect(got.args).toEqual(['local', 'mount', '/var/lib/kubelet/pods/x', '{"a":"b"}']);
    expect(dirname(dirname(got.file))).toBe(dirname(executable));
    expect(got.file).toMatch(/\/stowage~local\/\.v-[^/]+\/stowage-flexvolume\.mjs$/);
  });

  it('finds the bundle when started by a relative path or by its bare name', async () => {
    const executable = await installLocal();
    const driverDir = dirname(executable);
    const expected = (await run(executable, ['init'])).file;
    expect((await run('./local', ['init'], { cwd: driverDir })).file).toBe(expected);
    expect((await run('local', ['init'], { cwd: driverDir })).file).toBe(expected);
    expect((await run('stowage~local/local', ['init'], { cwd: pluginDir })).file).toBe(expected);
  });
});
