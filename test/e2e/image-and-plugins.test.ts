import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildPlugins } from '../../deploy/plugins/build.js';
import { PROPAGATED_MOUNT } from '../../deploy/plugins/config.js';
import { pollUntil } from '../../src/base/backoff.js';
import { type PrivateDockerd, startDockerd } from './dockerd.js';
import { docker, TEST_IMAGE } from './env.js';
import { stowageImage } from './stowage-image.js';

/**
 * The image and the managed plugin stowage/local through the suite's real dockerd: `npm run
 * image`'s build (offline), `npm run plugins`' docker plugin create, real loop devices and mounts
 * made inside the plugin and seen by dockerd through the propagated mount.
 */
let dockerd: PrivateDockerd | undefined;
let base: string;
let stateRoot: string;
let image: string;
let plugin: string;
let tag: string;

const json = <T>(text: string): T => JSON.parse(text) as T;

async function pluginInfo(): Promise<{ Id: string; Enabled: boolean }> {
  const res = await docker(['plugin', 'inspect', plugin]);
  expect(res.exitCode, res.stderr).toBe(0);
  return json<{ Id: string; Enabled: boolean }[]>(res.stdout)[0]!;
}

async function createPlugin(): Promise<void> {
  await buildPlugins({ host: dockerd!.host, drivers: ['local'], stateRoot, image, tag });
}

/** Loop devices whose backing file lies in this test's directories. */
async function ourLoopDevices(): Promise<string[]> {
  const res = await execa('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE'], { reject: false });
  const rows = res.stdout
    ? json<{ loopdevices: { name: string; 'back-file': string | null }[] }>(res.stdout)
    : undefined;
  return (rows?.loopdevices ?? [])
    .filter(
      (d) => d['back-file']?.includes(stateRoot) || d['back-file']?.includes('/var/lib/stowage/local/pv'),
    )
    .map((d) => d.name);
}

async function mountsUnder(fragment: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((mp) => mp.includes(fragment));
}

beforeAll(async () => {
  dockerd = await startDockerd();
  base = await mkdtemp(join(tmpdir(), 'stowage-plugin-'));
  stateRoot = join(base, 'plugins');
  image = await stowageImage(dockerd);
  tag = image.split(':')[1]!;
  plugin = `stowage/local:${tag}`;
}, 900_000);

afterAll(async () => {
  await docker(['rm', '-f', 'plugin-user']);
  await docker(['plugin', 'rm', '-f', `stowage/nfs:${tag}`]);
  for (const v of ['pv1', 'pv2', 'pv-default']) await docker(['volume', 'rm', '-f', v]);
  await docker(['plugin', 'disable', '-f', plugin]);
  await docker(['plugin', 'rm', '-f', plugin]);
  await dockerd?.stop();
  for (const dev of await ourLoopDevices().catch(() => []))
    await execa('losetup', ['-d', dev], { reject: false });
  if (base) await rm(base, { recursive: true, force: true });
});

describe('the stowage image', { timeout: 120_000 }, () => {
  it('runs stowage --version on Node 22', async () => {
    const res = await docker(['run', '--rm', image, '--version']);
    expect(res.exitCode, res.stderr).toBe(0);
    expect(res.stdout).toMatch(
      new RegExp(`^stowage ${tag.replace(/\./g, '\\.')} \\(node v22\\.\\d+\\.\\d+\\)$`),
    );
  });

  it('has the mount tools, production dependencies only and no compilers', async () => {
    const probe = [
      'for t in losetup mount umount mkfs.ext4 mkfs.xfs blkid mount.nfs findmnt; do command -v $t >/dev/null || echo missing $t; done',
      'for t in gcc g++ make python3 cc; do command -v $t >/dev/null && echo present $t; done',
      'for m in typescript vitest @biomejs/biome esbuild tsx; do test -e /opt/stowage/node_modules/$m && echo dev $m; done',
      'test -e /opt/stowage/node_modules/better-sqlite3/build/Release/better_sqlite3.node || echo missing sqlite',
      // mount.nfs needs /etc/protocols (netbase), or every NFS/EFS mount fails in the image.
      'test -e /etc/protocols || echo missing /etc/protocols',
      'true',
    ].join('; ');
    const res = await docker(['run', '--rm', '--entrypoint', 'sh', image, '-c', probe]);
    expect(res.exitCode, res.stderr).toBe(0);
    expect(res.stdout).toBe('');
    const size = Number((await docker(['image', 'inspect', '--format', '{{.Size}}', image])).stdout);
    // README states the size; a fat image (dev dependencies, compilers, docs) fails here.
    expect(size).toBeGreaterThan(100e6);
    expect(size).toBeLessThan(400e6);
  });
});

// Plugin create, enable and dockerd restarts take seconds each (tens under load): generous deadlines.
describe('managed plugin stowage/local', { timeout: 240_000 }, () => {
  it('is created from the image and enables', async () => {
    await createPlugin();
    expect(existsSync(join(stateRoot, 'local'))).toBe(true);
    const en = await docker(['plugin', 'enable', plugin], 120_000);
    expect(en.exitCode, en.stderr).toBe(0);
    expect((await pluginInfo()).Enabled).toBe(true);
  });

  it('serves a volume: one container writes, a second reads, the mountpoint lies under the propagated mount', async () => {
    const c = await docker(['volume', 'create', '-d', plugin, '-o', 'size=64M', 'pv1']);
    expect(c.exitCode, c.stderr).toBe(0);
    const w = await docker(['run', '--rm', '-v', 'pv1:/data', TEST_IMAGE, 'sh', '-c', 'echo kept > /data/f']);
    expect(w.exitCode, w.stderr).toBe(0);
    const r = await docker(['run', '--rm', '-v', 'pv1:/data', TEST_IMAGE, 'cat', '/data/f']);
    expect(r.stdout).toBe('kept');
    // The image file is in the host state directory, not in the plugin's rootfs.
    expect((await stat(join(stateRoot, 'local', 'local', 'pv1.img'))).size).toBe(64 * 1024 ** 2);
    const run = await docker([
      'run',
      '-d',
      '--name',
      'plugin-user',
      '-v',
      'pv1:/data',
      TEST_IMAGE,
      'sleep',
      '600',
    ]);
    expect(run.exitCode, run.stderr).toBe(0);
    const insp = json<{ Mountpoint: string }[]>((await docker(['volume', 'inspect', 'pv1'])).stdout)[0]!;
    const { Id } = await pluginInfo();
    // Docker shows the path the plugin returned; it maps it to the host's propagated mount.
    expect(insp.Mountpoint).toBe(`${PROPAGATED_MOUNT}/volumes/pv1`);
    // dockerd's view of the mount is the host's: the container's data is on the loop device.
    expect(await mountsUnder(`/plugins/${Id}/propagated-mount/volumes/`)).not.toHaveLength(0);
  });

  it('refuses disable while a container uses a volume, and the container keeps working', async () => {
    const dis = await docker(['plugin', 'disable', plugin]);
    expect(dis.exitCode).not.toBe(0);
    expect(dis.stderr).toMatch(/in use/);
    expect((await pluginInfo()).Enabled).toBe(true);
    const r = await docker(['exec', 'plugin-user', 'cat', '/data/f']);
    expect(r.stdout).toBe('kept');
    expect((await docker(['rm', '-f', 'plugin-user'])).exitCode).toBe(0);
  });

  it('keeps volumes and data across disable → enable and dockerd restarts', async () => {
    // Docker refuses a plain disable while volumes of the plugin exist; -f is safe once no
    // container uses them (stowage has unmounted them: nothing is cut off).
    expect((await docker(['plugin', 'disable', '-f', plugin])).exitCode).toBe(0);
    expect((await docker(['plugin', 'enable', plugin], 120_000)).exitCode).toBe(0);
    await dockerd!.restart();
    expect((await pluginInfo()).Enabled).toBe(true);
    const ls = await docker(['volume', 'ls', '--format', '{{.Driver}} {{.Name}}']);
    expect(ls.stdout.split('\n')).toContain(`${plugin} pv1`);
    const r = await docker(['run', '--rm', '-v', 'pv1:/data', TEST_IMAGE, 'cat', '/data/f']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toBe('kept');
  });

  it('keeps volumes and data across rm → create → enable (an upgrade), with a new plugin id', async () => {
    const before = (await pluginInfo()).Id;
    expect((await docker(['plugin', 'disable', '-f', plugin])).exitCode).toBe(0);
    expect((await docker(['plugin', 'rm', '-f', plugin])).exitCode).toBe(0);
    await createPlugin();
    expect((await docker(['plugin', 'enable', plugin], 120_000)).exitCode).toBe(0);
    const after = (await pluginInfo()).Id;
    expect(after).not.toBe(before);
    const ls = await docker(['volume', 'ls', '--format', '{{.Driver}} {{.Name}}']);
    expect(ls.stdout.split('\n')).toContain(`${plugin} pv1`);
    // dockerd dials the new plugin's socket, not the old id's.
    const r = await docker(['run', '--rm', '-v', 'pv1:/data', TEST_IMAGE, 'cat', '/data/f'], 120_000);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toBe('kept');
  });

  it('takes a settable env value: docker plugin set changes the default size', async () => {
    expect((await docker(['plugin', 'disable', '-f', plugin])).exitCode).toBe(0);
    const set = await docker(['plugin', 'set', plugin, 'STOWAGE_LOCAL_DEFAULT_SIZE=48M']);
    expect(set.exitCode, set.stderr).toBe(0);
    expect((await docker(['plugin', 'enable', plugin], 120_000)).exitCode).toBe(0);
    const c = await docker(['volume', 'create', '-d', plugin, 'pv-default']);
    expect(c.exitCode, c.stderr).toBe(0);
    expect((await stat(join(stateRoot, 'local', 'local', 'pv-default.img'))).size).toBe(48 * 1024 ** 2);
  });

  it('refuses to enable with an invalid setting, naming it, and changes nothing', async () => {
    expect((await docker(['plugin', 'disable', '-f', plugin])).exitCode).toBe(0);
    expect((await docker(['plugin', 'set', plugin, 'STOWAGE_LOCAL_DEFAULT_FS_TYPE=btrfs'])).exitCode).toBe(0);
    const en = await docker(['plugin', 'enable', plugin], 120_000);
    expect(en.exitCode).not.toBe(0);
    expect((await pluginInfo()).Enabled).toBe(false);
    // dockerd shows a plugin's own output only in its log: the daemon's error names the setting.
    const log = await pollUntil(
      async () => {
        const text = await readFile(dockerd!.logFile, 'utf8');
        return text.includes('STOWAGE_LOCAL_DEFAULT_FS_TYPE') ? text : undefined;
      },
      { timeoutMs: 10_000, what: 'the plugin error in the dockerd log' },
    );
    expect(log).toMatch(/local\.defaultFsType.*set by STOWAGE_LOCAL_DEFAULT_FS_TYPE/);
    // Fixed setting: enables, and the volumes are all still there.
    expect((await docker(['plugin', 'set', plugin, 'STOWAGE_LOCAL_DEFAULT_FS_TYPE='])).exitCode).toBe(0);
    const again = await docker(['plugin', 'enable', plugin], 120_000);
    if (again.exitCode !== 0) {
      // dockerd 20.10 keeps the failed plugin's containerd container: the next enable answers
      // "id already in use" and enables the plugin anyway. Nothing else is accepted.
      expect(again.stderr).toMatch(/id already in use/);
      await pollUntil(async () => ((await pluginInfo()).Enabled ? true : undefined), {
        timeoutMs: 30_000,
        what: 'the plugin to be enabled after the fixed setting',
      });
    }
    const r = await docker(['run', '--rm', '-v', 'pv1:/data', TEST_IMAGE, 'cat', '/data/f']);
    expect(r.stdout).toBe('kept');
  });

  it('leaks nothing: volumes removed, plugin removed, no mounts and no loop devices left', async () => {
    for (const v of ['pv1', 'pv-default']) {
      const rmv = await docker(['volume', 'rm', v]);
      expect(rmv.exitCode, rmv.stderr).toBe(0);
    }
    expect(existsSync(join(stateRoot, 'local', 'local', 'pv1.img'))).toBe(false);
    const { Id } = await pluginInfo();
    expect((await docker(['plugin', 'disable', plugin])).exitCode).toBe(0);
    expect((await docker(['plugin', 'rm', plugin])).exitCode).toBe(0);
    expect(await mountsUnder(Id)).toEqual([]);
    expect(await ourLoopDevices()).toEqual([]);
  });
});

describe('managed plugin stowage/nfs with its NFS server unreachable', () => {
  it('enables anyway, stays enabled across a dockerd restart, and says what is wrong on use', async () => {
    const nfs = `stowage/nfs:${tag}`;
    await buildPlugins({ host: dockerd!.host, drivers: ['nfs'], stateRoot, image, tag });
    // 192.0.2.1 is TEST-NET-1: nothing answers, connections time out rather than being refused.
    const set = await docker([
      'plugin',
      'set',
      nfs,
      'NFS_SERVER=192.0.2.1',
      'MOUNT_DIR=/exports',
      'NFS_VERS=nfsvers=4',
    ]);
    expect(set.exitCode, set.stderr).toBe(0);
    // dockerd gives a plugin's socket little time to appear: the daemon must not wait on the server.
    const en = await docker(['plugin', 'enable', nfs], 120_000);
    expect(en.exitCode, en.stderr).toBe(0);
    await dockerd!.restart();
    const info = json<{ Enabled: boolean }[]>((await docker(['plugin', 'inspect', nfs])).stdout)[0]!;
    expect(info.Enabled).toBe(true);
    const c = await docker(['volume', 'create', '-d', nfs, 'pv-nfs'], 120_000);
    expect(c.exitCode).not.toBe(0);
    expect(c.stderr).toMatch(/192\.0\.2\.1/);
    const ls = await docker(['volume', 'ls', '--format', '{{.Name}}']);
    expect(ls.stdout.split('\n')).not.toContain('pv-nfs');
    expect((await docker(['plugin', 'disable', nfs])).exitCode).toBe(0);
    expect((await docker(['plugin', 'rm', nfs])).exitCode).toBe(0);
  }, 300_000);
});
