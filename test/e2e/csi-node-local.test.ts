import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ServiceError } from '@grpc/grpc-js';
import { execa } from 'execa';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { openRuntime } from '../../src/runtime.js';
import { CsiProcess } from './csi-process.js';

/**
 * The CSI node plugin as kubelet drives it: a real `stowage csi --driver local --mode node`
 * process on a unix socket, a temp kubelet directory, real loop devices and mounts. Stage, publish
 * for two pods (one read-only), unpublish, unstage; every call repeated; the plugin killed with
 * SIGKILL and started again between the steps; the spec's refusals, each with nothing changed in
 * the kernel's mount table or the store.
 */

const HOST = 'csi-node-e2e';
const VOL = 'csi-n1';
const POD_A = '8c3f7a10-4d2e-4b6f-9a1c-2e5d7b9f0a11';
const POD_B = '2b6d9e44-7f1a-4c3b-8e5d-6a0f1c2b3d44';
const POD_C = '9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d';

let base: string;
let kubelet: string;
let plugin: CsiProcess;

const staging = () =>
  join(kubelet, 'plugins', 'kubernetes.io', 'csi', 'local.csi.stowage.io', 'f00d', 'globalmount');
const target = (pod: string) => join(kubelet, 'pods', pod, 'volumes', 'kubernetes.io~csi', VOL, 'mount');
const cap = (mode = 'SINGLE_NODE_WRITER') => ({
  accessMode: { mode },
  mount: { fsType: 'ext4', mountFlags: [], volumeMountGroup: '' },
});

function node(method: string, req: Record<string, unknown>) {
  return plugin.client.call('Node', method as never, req as never);
}
const stage = (over: Record<string, unknown> = {}) =>
  node('NodeStageVolume', { volumeId: VOL, stagingTargetPath: staging(), volumeCapability: cap(), ...over });
const publish = (pod: string, over: Record<string, unknown> = {}) =>
  node('NodePublishVolume', {
    volumeId: VOL,
    stagingTargetPath: staging(),
    targetPath: target(pod),
    volumeCapability: cap(),
    ...over,
  });

/** The gRPC status code a call failed with. */
async function codeOf(p: Promise<unknown>): Promise<number> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e as ServiceError,
  );
  expect(err, 'expected the call to fail').toBeDefined();
  return (err as ServiceError).code;
}
const INVALID_ARGUMENT = 3;
const NOT_FOUND = 5;
const ALREADY_EXISTS = 6;
const FAILED_PRECONDITION = 9;

/** The kernel's mount points under the test's directory, in mount order. */
async function mountsUnderBase(): Promise<string[]> {
  return (await readFile('/proc/self/mountinfo', 'utf8'))
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((mp) => mp.startsWith(`${base}/`));
}

/** What the store says of the volume's mounts (host, refs, state), through the CLI. */
async function storeMounts(): Promise<unknown> {
  const res = await plugin.cli(['volumes', 'inspect', VOL]);
  expect(res.exitCode, res.stderr).toBe(0);
  return JSON.parse(res.stdout).status.mounts;
}

async function state() {
  return { kernel: await mountsUnderBase(), store: await storeMounts() };
}

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'stowage-csi-node-'));
  kubelet = join(base, 'kubelet');
  const configFile = join(base, 'config.yaml');
  await writeFile(configFile, [`dataDir: ${join(base, 'data')}`, `hostId: ${HOST}`, ''].join('\n'));
  // The controller's CreateVolume is another part's; the volume is made through the core here.
  const rt = await openRuntime(loadConfig({ file: configFile, env: {} }), { log: pino({ level: 'silent' }) });
  try {
    await rt.manager.create('local', VOL, { size: '64M' });
  } finally {
    await rt.close();
  }
  await mkdir(staging(), { recursive: true }); // kubelet makes the staging directory
  for (const pod of [POD_A, POD_B, POD_C]) await mkdir(join(target(pod), '..'), { recursive: true });
  plugin = new CsiProcess({
    configFile,
    driver: 'local',
    mode: 'node',
    socket: join(base, 'csi', 'csi.sock'),
    kubeletDir: kubelet,
    logFile: join(base, 'csi.log'),
  });
  await plugin.start();
}, 60_000);

afterAll(async () => {
  await plugin?.stop().catch(() => undefined);
  if (!base) return;
  // Whatever a failed test left: binds first (the last made first), then the volume's own mount.
  for (const mp of (await mountsUnderBase()).reverse()) await execa('umount', ['-l', mp], { reject: false });
  const img = join(base, 'data', 'local', `${VOL}.img`);
  const loops = await execa('losetup', ['-j', img, '-O', 'NAME', '-n'], { reject: false });
  for (const dev of String(loops.stdout).split('\n').filter(Boolean))
    await execa('losetup', ['-d', dev.trim()], { reject: false });
  await rm(base, { recursive: true, force: true });
});

describe('the CSI node plugin for local volumes (real process, loop devices, mounts)', () => {
  it('identifies the node by the store host id, with the host topology', async () => {
    const info = await node('NodeGetInfo', {});
    expect(info.nodeId).toBe(HOST);
    expect(info.accessibleTopology.segments).toEqual({ 'topology.stowage.io/host': HOST });
    const caps = (await node('NodeGetCapabilities', {})).capabilities.map(
      (c: { rpc: { type: string } }) => c.rpc.type,
    );
    expect(caps).toContain('STAGE_UNSTAGE_VOLUME');
    expect(caps).toContain('VOLUME_MOUNT_GROUP');
  });

  it('stages once, repeated; a plugin killed after staging finds it staged when it comes back', async () => {
    await stage();
    await stage();
    expect(await mountsUnderBase()).toEqual([join(base, 'data', 'volumes', VOL), staging()]);
    expect(await storeMounts()).toEqual([expect.objectContaining({ host: HOST, refs: 1, state: 'mounted' })]);
    await plugin.kill();
    await plugin.start();
    await stage();
    expect(await mountsUnderBase()).toEqual([join(base, 'data', 'volumes', VOL), staging()]);
    expect(await storeMounts()).toEqual([expect.objectContaining({ refs: 1 })]);
  });

  it('publishes for two pods (one read-only), repeated; data written by one pod is read by the other', async () => {
    await publish(POD_A);
    await publish(POD_A);
    await publish(POD_B, { readonly: true });
    await publish(POD_B, { readonly: true });
    await writeFile(join(target(POD_A), 'greeting'), 'from pod A');
    expect(await readFile(join(target(POD_B), 'greeting'), 'utf8')).toBe('from pod A');
    await expect(writeFile(join(target(POD_B), 'nope'), 'x')).rejects.toMatchObject({ code: 'EROFS' });
    expect(await storeMounts()).toEqual([expect.objectContaining({ refs: 3 })]);
    expect((await mountsUnderBase()).filter((m) => m.startsWith(join(kubelet, 'pods')))).toEqual([
      target(POD_A),
      target(POD_B),
    ]);
  });

  it('reports usage of the 64 MB filesystem and a normal condition', async () => {
    const stats = await node('NodeGetVolumeStats', { volumeId: VOL, volumePath: target(POD_A) });
    expect(stats.volumeCondition).toEqual({ abnormal: false, message: 'mounted' });
    const bytes = stats.usage.find((u: { unit: string }) => u.unit === 'BYTES');
    expect(Number(bytes.total)).toBeGreaterThan(40 * 1024 ** 2);
    expect(Number(bytes.total)).toBeLessThanOrEqual(64 * 1024 ** 2);
    expect(Number(bytes.used)).toBeGreaterThan(0);
    expect(stats.usage.find((u: { unit: string }) => u.unit === 'INODES')).toBeDefined();
  });

  it("gives the volume's root directory to a pod's mount group; a target unmounted by hand shows as abnormal", async () => {
    const grouped = cap();
    grouped.mount.volumeMountGroup = '2345';
    await publish(POD_C, { volumeCapability: grouped });
    const root = await stat(target(POD_C));
    expect(root.gid).toBe(2345);
    expect(root.mode & 0o2070).toBe(0o2070); // group rwx and setgid, so new files join the group
    await execa('umount', [target(POD_C)]);
    const stats = await node('NodeGetVolumeStats', { volumeId: VOL, volumePath: target(POD_C) });
    expect(stats.volumeCondition.abnormal).toBe(true);
    expect(stats.volumeCondition.message).toContain('nothing is mounted at');
    await node('NodeUnpublishVolume', { volumeId: VOL, targetPath: target(POD_C) });
    expect(existsSync(target(POD_C))).toBe(false);
    expect(await storeMounts()).toEqual([expect.objectContaining({ refs: 3 })]);
  });

  it("refuses each of the spec's bad requests with its code, and changes nothing", async () => {
    const elsewhere = join(base, 'elsewhere', 'mount');
    const cases: [string, () => Promise<unknown>, number][] = [
      ['stage without volume id', () => stage({ volumeId: '' }), INVALID_ARGUMENT],
      ['stage without capability', () => stage({ volumeCapability: null }), INVALID_ARGUMENT],
      ['stage of an unknown volume', () => stage({ volumeId: 'csi-nope' }), NOT_FOUND],
      [
        'stage with a multi-node mode',
        () => stage({ volumeCapability: cap('MULTI_NODE_MULTI_WRITER') }),
        FAILED_PRECONDITION,
      ],
      ['stage outside the kubelet dir', () => stage({ stagingTargetPath: elsewhere }), INVALID_ARGUMENT],
      ['publish without volume id', () => publish(POD_A, { volumeId: '' }), INVALID_ARGUMENT],
      ['publish without capability', () => publish(POD_A, { volumeCapability: null }), INVALID_ARGUMENT],
      ['publish of an unknown volume', () => publish(POD_A, { volumeId: 'csi-nope' }), NOT_FOUND],
      [
        'publish with a multi-node mode',
        () => publish(POD_A, { volumeCapability: cap('MULTI_NODE_READER_ONLY') }),
        FAILED_PRECONDITION,
      ],
      ['publish outside the kubelet dir', () => publish(POD_A, { targetPath: elsewhere }), INVALID_ARGUMENT],
      [
        'publish without stage',
        () => publish(POD_A, { stagingTargetPath: join(kubelet, 'plugins', 'other', 'globalmount') }),
        FAILED_PRECONDITION,
      ],
      [
        'publish read-only where published read-write',
        () => publish(POD_A, { readonly: true }),
        ALREADY_EXISTS,
      ],
      [
        'unpublish without volume id',
        () => node('NodeUnpublishVolume', { targetPath: target(POD_A) }),
        INVALID_ARGUMENT,
      ],
      [
        'unstage outside the kubelet dir',
        () => node('NodeUnstageVolume', { volumeId: VOL, stagingTargetPath: elsewhere }),
        INVALID_ARGUMENT,
      ],
      [
        'stats of a path where it is not published',
        () => node('NodeGetVolumeStats', { volumeId: VOL, volumePath: join(kubelet, 'pods') }),
        NOT_FOUND,
      ],
    ];
    const before = await state();
    for (const [what, call, code] of cases) {
      expect(await codeOf(call()), what).toBe(code);
      expect(await state(), what).toEqual(before);
    }
    expect(existsSync(elsewhere)).toBe(false);
  });

  it('unpublishes both pods, repeated, across a plugin crash; the target directories go, the stage stays', async () => {
    await node('NodeUnpublishVolume', { volumeId: VOL, targetPath: target(POD_A) });
    await plugin.kill();
    await plugin.start();
    await node('NodeUnpublishVolume', { volumeId: VOL, targetPath: target(POD_A) });
    await node('NodeUnpublishVolume', { volumeId: VOL, targetPath: target(POD_B) });
    await node('NodeUnpublishVolume', { volumeId: VOL, targetPath: target(POD_B) });
    expect(existsSync(target(POD_A))).toBe(false);
    expect(existsSync(target(POD_B))).toBe(false);
    expect(await mountsUnderBase()).toEqual([join(base, 'data', 'volumes', VOL), staging()]);
    expect(await storeMounts()).toEqual([expect.objectContaining({ refs: 1 })]);
  });

  it('unstages, repeated: nothing mounted, the loop device freed, the data kept in the image', async () => {
    await node('NodeUnstageVolume', { volumeId: VOL, stagingTargetPath: staging() });
    await node('NodeUnstageVolume', { volumeId: VOL, stagingTargetPath: staging() });
    expect(await mountsUnderBase()).toEqual([]);
    expect(await storeMounts()).toEqual([]);
    const img = join(base, 'data', 'local', `${VOL}.img`);
    expect(String((await execa('losetup', ['-j', img])).stdout)).toBe('');
    // Staged and published again after all that: the file written by pod A is still there.
    await stage();
    await publish(POD_B, { readonly: true });
    expect(await readFile(join(target(POD_B), 'greeting'), 'utf8')).toBe('from pod A');
    await node('NodeUnpublishVolume', { volumeId: VOL, targetPath: target(POD_B) });
    await node('NodeUnstageVolume', { volumeId: VOL, stagingTargetPath: staging() });
    expect(await mountsUnderBase()).toEqual([]);
  });
});
