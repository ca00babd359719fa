import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CsiProcess } from './csi-process.js';
import { DaemonProcess } from './daemon-process.js';
import { type PrivateDockerd, startDockerd } from './dockerd.js';
import { docker, PLUGIN_DIR, TEST_IMAGE } from './env.js';

/**
 * One local volume used at once by a Docker container (real dockerd, the stowage daemon's plugin
 * socket) and a pod through the CSI node plugin (a real `stowage csi` process) on one host and one
 * store: the counts add up, neither door unmounts the other's user, and Remove is refused while
 * either uses the volume.
 */

const VOL = 'csi-dock1';
const POD = '5e8a1c3b-9d4f-4a2e-b7c6-0f1e2d3c4b5a';
const HOST = `csi-docker-${hostname()}`.slice(0, 60);

let base: string;
let kubelet: string;
let daemon: DaemonProcess;
let plugin: CsiProcess;
let dockerd: PrivateDockerd | undefined;

const mountpoint = () => join(base, 'data', 'volumes', VOL);
const staging = () =>
  join(kubelet, 'plugins', 'kubernetes.io', 'csi', 'local.csi.stowage.io', 'beef', 'globalmount');
const target = () => join(kubelet, 'pods', POD, 'volumes', 'kubernetes.io~csi', VOL, 'mount');
const cap = {
  accessMode: { mode: 'SINGLE_NODE_WRITER' },
  mount: { fsType: '', mountFlags: [], volumeMountGroup: '' },
};

function node(method: string, req: Record<string, unknown>) {
  return plugin.client.call('Node', method as never, req as never);
}
const stage = () =>
  node('NodeStageVolume', { volumeId: VOL, stagingTargetPath: staging(), volumeCapability: cap });
const publish = () =>
  node('NodePublishVolume', {
    volumeId: VOL,
    stagingTargetPath: staging(),
    targetPath: target(),
    volumeCapability: cap,
  });

async function kernelMounts(): Promise<string[]> {
  return (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((l) => l.split(' ')[4] ?? '');
}

/** This host's count of the volume in the store (0 when it has no mount record). */
async function refs(): Promise<number> {
  const res = await daemon.cli(['volumes', 'inspect', VOL]);
  expect(res.exitCode, res.stderr).toBe(0);
  const mounts: { host: string; refs: number }[] = JSON.parse(res.stdout).status.mounts;
  return mounts.find((m) => m.host === HOST)?.refs ?? 0;
}

function runContainer(name: string) {
  return docker([
    'run',
    '-d',
    '--network',
    'none',
    '--name',
    name,
    '-v',
    `${VOL}:/data`,
    TEST_IMAGE,
    'sleep',
    '600',
  ]);
}

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'stowage-csi-docker-'));
  kubelet = join(base, 'kubelet');
  const configFile = join(base, 'config.yaml');
  await writeFile(configFile, [`dataDir: ${join(base, 'data')}`, `hostId: ${HOST}`, ''].join('\n'));
  await mkdir(staging(), { recursive: true });
  await mkdir(join(target(), '..'), { recursive: true });
  dockerd = await startDockerd();
  daemon = new DaemonProcess({
    dataDir: join(base, 'data'),
    socketDir: PLUGIN_DIR,
    logFile: join(base, 'daemon.log'),
    configFile,
  });
  await daemon.start();
  plugin = new CsiProcess({
    configFile,
    driver: 'local',
    mode: 'node',
    socket: join(base, 'csi', 'csi.sock'),
    kubeletDir: kubelet,
    logFile: join(base, 'csi.log'),
  });
  await plugin.start();
}, 120_000);

afterAll(async () => {
  await docker(['rm', '-f', 'csi-c1', 'csi-c2']);
  await plugin?.client
    .call('Node', 'NodeUnpublishVolume', { volumeId: VOL, targetPath: target() })
    .catch(() => undefined);
  await plugin?.client
    .call('Node', 'NodeUnstageVolume', { volumeId: VOL, stagingTargetPath: staging() })
    .catch(() => undefined);
  await docker(['volume', 'rm', VOL]);
  await dockerd?.stop();
  await plugin?.stop().catch(() => undefined);
  await daemon?.stop();
  if (!base) return;
  for (const mp of (await kernelMounts()).filter((m) => m.startsWith(`${base}/`)).reverse())
    await execa('umount', ['-l', mp], { reject: false });
  await rm(base, { recursive: true, force: true });
});

describe('a local volume used by a Docker container and a CSI pod on one host', () => {
  it('counts the container, the stage and the pod on one mount; the pod reads what the container wrote', async () => {
    const created = await docker(['volume', 'create', '-d', 'stowage-local', '-o', 'size=64M', VOL]);
    expect(created.exitCode, created.stderr).toBe(0);
    const c1 = await runContainer('csi-c1');
    expect(c1.exitCode, c1.stderr).toBe(0);
    expect((await docker(['exec', 'csi-c1', 'sh', '-c', 'echo from-docker > /data/c'])).exitCode).toBe(0);
    await stage();
    await publish();
    expect(await refs()).toBe(3);
    expect(await readFile(join(target(), 'c'), 'utf8')).toBe('from-docker\n');
    await writeFile(join(target(), 'p'), 'from-pod');
    expect((await docker(['exec', 'csi-c1', 'cat', '/data/p'])).stdout).toBe('from-pod');
  });

  it("stopping the container leaves the pod's view mounted; Remove is refused while the pod uses the volume", async () => {
    expect((await docker(['rm', '-f', 'csi-c1'])).exitCode).toBe(0);
    expect(await refs()).toBe(2);
    expect(await kernelMounts()).toEqual(expect.arrayContaining([mountpoint(), staging(), target()]));
    expect(await readFile(join(target(), 'c'), 'utf8')).toBe('from-docker\n');
    const removed = await docker(['volume', 'rm', VOL]);
    expect(removed.exitCode).not.toBe(0);
    expect(removed.stderr).toMatch(/in use/);
    expect(await refs()).toBe(2);
  });

  it("unpublishing and unstaging the pod leaves the container's volume mounted; Remove refused while it runs", async () => {
    const c2 = await runContainer('csi-c2');
    expect(c2.exitCode, c2.stderr).toBe(0);
    expect(await refs()).toBe(3);
    await node('NodeUnpublishVolume', { volumeId: VOL, targetPath: target() });
    await node('NodeUnstageVolume', { volumeId: VOL, stagingTargetPath: staging() });
    expect(await refs()).toBe(1);
    const mounts = await kernelMounts();
    expect(mounts).toContain(mountpoint());
    expect(mounts).not.toContain(target());
    expect(mounts).not.toContain(staging());
    const read = await docker(['exec', 'csi-c2', 'sh', '-c', 'cat /data/p && echo more > /data/c2']);
    expect(read.exitCode, read.stderr).toBe(0);
    expect(read.stdout).toBe('from-pod');
    const removed = await docker(['volume', 'rm', VOL]);
    expect(removed.exitCode).not.toBe(0);
    expect(removed.stderr).toMatch(/in use/);
  });

  it('once the container is gone too, the volume is unmounted and Remove succeeds', async () => {
    expect((await docker(['rm', '-f', 'csi-c2'])).exitCode).toBe(0);
    expect(await refs()).toBe(0);
    expect(await kernelMounts()).not.toContain(mountpoint());
    const removed = await docker(['volume', 'rm', VOL]);
    expect(removed.exitCode, removed.stderr).toBe(0);
  });
});
