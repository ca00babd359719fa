import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callPlugin } from '../helpers/plugin-client.js';
import { DaemonProcess } from './daemon-process.js';
import { type PrivateDockerd, startDockerd } from './dockerd.js';
import { docker, PLUGIN_DIR, TEST_IMAGE } from './env.js';

/**
 * A user's session with a real dockerd through the real plugin socket: create, write, read,
 * share, restart the daemon under a running container, remove; then nothing may be left behind.
 */
const VOL = 'e2e-v1';
let base: string;
let daemon: DaemonProcess;
let dockerd: PrivateDockerd | undefined;

async function kernelMounts(): Promise<string[]> {
  return (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((l) => l.split(' ')[4] ?? '');
}

async function loopBackingFiles(): Promise<string> {
  return String(
    (await execa('losetup', ['--list', '--noheadings', '--output', 'BACK-FILE'], { reject: false })).stdout,
  );
}

async function inspect(): Promise<{ mounts: { refs: number; host: string }[] }> {
  const res = await daemon.cli(['volumes', 'inspect', VOL]);
  expect(res.exitCode, res.stderr).toBe(0);
  return JSON.parse(res.stdout).status;
}

function run(args: string[]) {
  return docker(['run', '--network', 'none', ...args]);
}

beforeAll(async () => {
  dockerd = await startDockerd();
  base = await mkdtemp(join(tmpdir(), 'stowage-e2e-'));
  daemon = new DaemonProcess({
    dataDir: join(base, 'data'),
    socketDir: PLUGIN_DIR,
    logFile: join(base, 'daemon.log'),
  });
  await daemon.start();
});

afterAll(async () => {
  await docker(['rm', '-f', 'e2e-c1', 'e2e-c2']);
  await docker(['volume', 'rm', VOL]);
  await dockerd?.stop(); // before the plugin, as Docker wants
  await daemon?.stop();
  if (base) await rm(base, { recursive: true, force: true });
});

describe('stowage-local with a real dockerd', () => {
  it('creates a volume with docker volume create and shows it in ls/inspect', async () => {
    const created = await docker(['volume', 'create', '-d', 'stowage-local', '-o', 'size=64M', VOL]);
    expect(created.exitCode, created.stderr).toBe(0);
    expect(created.stdout).toBe(VOL);

    const ls = await docker(['volume', 'ls', '--format', '{{.Driver}} {{.Name}}']);
    expect(ls.stdout.split('\n')).toContain(`stowage-local ${VOL}`);

    const info = await docker(['volume', 'inspect', VOL]);
    const [vol] = JSON.parse(info.stdout);
    expect(vol.Driver).toBe('stowage-local');
    expect(vol.Status.size).toBe('64M');
    expect(vol.Status.fsType).toBe('ext4');
    // The sparse image exists and is not mounted until a container needs it.
    expect(existsSync(join(base, 'data', 'local', `${VOL}.img`))).toBe(true);
    expect(vol.Mountpoint).toBe('');
  });

  it('lets one container write and a second one read the data back', async () => {
    const w = await run([
      '--rm',
      '-v',
      `${VOL}:/data`,
      TEST_IMAGE,
      'sh',
      '-c',
      'echo hello-stowage > /data/greeting',
    ]);
    expect(w.exitCode, w.stderr).toBe(0);
    const r = await run(['--rm', '-v', `${VOL}:/data`, TEST_IMAGE, 'cat', '/data/greeting']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toBe('hello-stowage');
    // Both containers are gone: the volume is unmounted and its loop device released.
    expect(await kernelMounts()).not.toContain(join(base, 'data', 'volumes', VOL));
    expect(await loopBackingFiles()).not.toContain(`${VOL}.img`);
  });

  it('keeps the volume mounted for a second container when the first one stops', async () => {
    for (const name of ['e2e-c1', 'e2e-c2']) {
      const c = await run(['-d', '--name', name, '-v', `${VOL}:/data`, TEST_IMAGE, 'sleep', '600']);
      expect(c.exitCode, c.stderr).toBe(0);
    }
    expect((await inspect()).mounts[0]?.refs).toBe(2);

    const stop = await docker(['rm', '-f', 'e2e-c1']);
    expect(stop.exitCode, stop.stderr).toBe(0);
    expect((await inspect()).mounts[0]?.refs).toBe(1);
    expect(await kernelMounts()).toContain(join(base, 'data', 'volumes', VOL));
    const use = await docker([
      'exec',
      'e2e-c2',
      'sh',
      '-c',
      'echo more > /data/second && cat /data/greeting',
    ]);
    expect(use.exitCode, use.stderr).toBe(0);
    expect(use.stdout).toBe('hello-stowage');
  });

  it('keeps mounts and their count across a daemon restart under a running container', async () => {
    expect(await daemon.stop()).toBe(0);
    expect(existsSync(daemon.socket())).toBe(false); // clean shutdown removes the socket ...
    expect(await kernelMounts()).toContain(join(base, 'data', 'volumes', VOL)); // ... and keeps the mount
    await daemon.start();
    expect((await inspect()).mounts[0]?.refs).toBe(1);
    const read = await docker(['exec', 'e2e-c2', 'cat', '/data/second']);
    expect(read.stdout).toBe('more');
  });

  it('refuses to remove the volume while a container uses it, through docker and through the socket', async () => {
    const rm1 = await docker(['volume', 'rm', VOL]);
    expect(rm1.exitCode).not.toBe(0);
    expect(rm1.stderr).toMatch(/in use/);
    const direct = await callPlugin(daemon.socket(), 'VolumeDriver.Remove', { Name: VOL });
    expect(direct.body.Err).toMatch(new RegExp(`volume ${VOL} is in use by 1 mount on host `));
    expect(existsSync(join(base, 'data', 'local', `${VOL}.img`))).toBe(true);
  });

  it('removes the volume once the last container is gone and leaves nothing behind', async () => {
    expect((await docker(['rm', '-f', 'e2e-c2'])).exitCode).toBe(0);
    const rm2 = await docker(['volume', 'rm', VOL]);
    expect(rm2.exitCode, rm2.stderr).toBe(0);
    const ls = await docker(['volume', 'ls', '-q']);
    expect(ls.stdout.split('\n')).not.toContain(VOL);
    expect(existsSync(join(base, 'data', 'local', `${VOL}.img`))).toBe(false);
    expect(await readdir(join(base, 'data', 'local'))).toEqual([]);
    expect((await kernelMounts()).filter((m) => m.startsWith(base))).toEqual([]);
    expect(await loopBackingFiles()).not.toContain(base);
  });
});
