import { mkdir, mkdtemp, readFile, rm, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeEc2 } from '../fakes/aws/ec2-endpoint.js';
import { DaemonProcess } from './daemon-process.js';
import { installDrivers, KubeletSim, pvOptions } from './kubelet-sim.js';

/**
 * An attachable driver as Kubernetes drives it: the controller-manager (another "machine": its own
 * host id, instance and config) runs attach/isattached/detach; the node's kubelet runs
 * waitforattach, mountdevice, mount (two pods), unmount, unmountdevice. Both run the installed
 * executable against the suite's EC2 endpoint, whose attachments become real loop devices.
 */
const NODE_INSTANCE = 'i-0f1e0000000000001';
const CONTROLLER_INSTANCE = 'i-0f1e0000000000002';
const NODE = 'ip-10-0-1-21.ec2.internal';
const AZ = 'us-east-1b';
const POD_A = '0b7c1d54-5f3a-4e8b-9c61-3a2f1e0d9c8b';
const POD_B = '9d2e4f60-1a3b-4c5d-8e7f-6a5b4c3d2e1f';
const ENV = { AWS_ACCESS_KEY_ID: 'AKIDTEST', AWS_SECRET_ACCESS_KEY: 'secret-for-tests-only' };

let base: string;
let ec2: FakeEc2;
let node: KubeletSim;
let controller: KubeletSim;
let nodeConfig: string;
let devDir: string;

const pv = pvOptions('pv-db', { name: 'flex-db', size: '1' });
const pvJson = JSON.stringify(pv);
const ebsVolume = () => ec2.volumes.find((v) => v.tags.Name === 'flex-db' && v.state !== 'deleted');

async function mountPoints(): Promise<string[]> {
  return (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((l) => l.split(' ')[4] ?? '');
}

async function config(file: string, lines: string[]): Promise<string> {
  await writeFile(file, [...lines, ''].join('\n'));
  return file;
}

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'stowage-flex-ebs-'));
  devDir = join(base, 'dev');
  const byIdDir = join(devDir, 'disk', 'by-id');
  await mkdir(byIdDir, { recursive: true });
  ec2 = await FakeEc2.start({ blockDevices: { imageDir: join(base, 'ec2'), devDir, byIdDir } });
  ec2.addInstance({ instanceId: NODE_INSTANCE, availabilityZone: AZ, privateDnsName: NODE });
  ec2.addInstance({ instanceId: CONTROLLER_INSTANCE, availabilityZone: 'us-east-1a', blockDevices: false });
  const kubeletDir = join(base, 'kubelet');
  const pluginDir = join(base, 'plugins');
  await installDrivers(pluginDir, ['ebs']);
  const ebs = [
    'ebs:',
    `  endpoint: ${ec2.url}`,
    `  devDir: ${devDir}`,
    `  byIdDir: ${byIdDir}`,
    '  attachTimeout: 5s',
  ];
  // One machine plays both: the state file is shared as a single-host store would be.
  const state = `state: ${join(base, 'state.db')}`;
  nodeConfig = await config(join(base, 'node.yaml'), [
    `hostId: ${NODE}`,
    `dataDir: ${join(base, 'node')}`,
    'drivers: [local, ebs]',
    state,
    'flexvolume:',
    `  kubeletDir: ${kubeletDir}`,
    'aws:',
    '  region: us-east-1',
    `  instanceId: ${NODE_INSTANCE}`,
    `  availabilityZone: ${AZ}`,
    ...ebs,
  ]);
  const controllerConfig = await config(join(base, 'controller.yaml'), [
    'hostId: controller-1',
    `dataDir: ${join(base, 'controller')}`,
    state,
    'aws:',
    '  region: us-east-1',
    `  instanceId: ${CONTROLLER_INSTANCE}`,
    '  availabilityZone: us-east-1a',
    ...ebs,
  ]);
  node = new KubeletSim({
    pluginDir,
    kubeletDir,
    driver: 'ebs',
    env: { ...ENV, STOWAGE_CONFIG: nodeConfig },
  });
  controller = new KubeletSim({
    pluginDir,
    kubeletDir,
    driver: 'ebs',
    env: { ...ENV, STOWAGE_CONFIG: controllerConfig },
  });
}, 120_000);

afterAll(async () => {
  for (const p of (await mountPoints()).filter((m) => base && m.startsWith(base)).reverse()) {
    await execa('umount', ['-l', p], { reject: false });
  }
  await ec2?.stop();
  if (base) await rm(base, { recursive: true, force: true });
});

describe('flexvolume ebs: controller-manager and kubelet call sequences', () => {
  it('answers init and getvolumename without touching AWS', async () => {
    expect(await node.ok(['init'])).toEqual({
      status: 'Success',
      capabilities: {
        attach: true,
        fsGroup: true,
        requiresFSResize: true,
        selinuxRelabel: true,
        supportsMetrics: false,
      },
    });
    expect(await controller.ok(['getvolumename', pvJson])).toEqual({
      status: 'Success',
      volumeName: 'flex-db',
    });
    expect(ec2.calls).toEqual([]);
  });

  it("attaches from the controller to the node found by its private DNS name, in the node's zone", async () => {
    const reply = await controller.ok(['attach', pvJson, NODE]);
    const v = ebsVolume();
    expect(v).toMatchObject({ availabilityZone: AZ, sizeGiB: 1 });
    expect(reply).toEqual({ status: 'Success', device: '/dev/xvdf' });
    expect(v?.attachments).toEqual([
      expect.objectContaining({ instanceId: NODE_INSTANCE, state: 'attached' }),
    ]);
    // Retried (the controller lost the reply): same device, no second AttachVolume.
    expect(await controller.ok(['attach', pvJson, NODE])).toEqual(reply);
    expect(ec2.calls.filter((c) => c.action === 'AttachVolume')).toHaveLength(1);
    expect(await controller.ok(['isattached', pvJson, NODE])).toEqual({ status: 'Success', attached: true });
  });

  it('waits for the attachment on the node and answers the local block device, every retry', async () => {
    const first = await node.ok(['waitforattach', '/dev/xvdf', pvJson]);
    expect(first.device).toMatch(/^\/dev\/loop\d+$/);
    expect(await node.ok(['waitforattach', '/dev/xvdf', pvJson])).toEqual(first);
  });

  it('mounts the device once, then bind-mounts it for two pods; retries change nothing', async () => {
    const dmp = node.deviceMountPath('flex-db');
    await mkdir(dmp, { recursive: true, mode: 0o750 });
    const { device } = await node.ok(['waitforattach', '/dev/xvdf', pvJson]);
    await node.ok(['mountdevice', dmp, String(device), pvJson]);
    await node.ok(['mountdevice', dmp, String(device), pvJson]);
    await node.mountPod(POD_A, 'pv-db', pv);
    await writeFile(join(node.podDir(POD_A, 'pv-db'), 'f'), 'from-pod-a');
    await node.mountPod(POD_B, 'pv-db', pv);
    expect(await readFile(join(node.podDir(POD_B, 'pv-db'), 'f'), 'utf8')).toBe('from-pod-a');
    expect(await readFile(join(dmp, 'f'), 'utf8')).toBe('from-pod-a');
    expect(ebsVolume()?.attachments).toHaveLength(1);
  });

  it("refuses the controller's detach while pods use the volume, and keeps it attached", async () => {
    const message = await controller.fails(['detach', 'flex-db', NODE]);
    expect(message).toBe(
      `volume flex-db has 3 active mounts on host ${NODE}; it is detached after the last one ends`,
    );
    expect(ebsVolume()?.attachments).toEqual([expect.objectContaining({ state: 'attached' })]);
  });

  it('survives a restart of the stowage daemon on the node in the middle, and kubelet retrying', async () => {
    const daemon = new DaemonProcess({
      dataDir: join(base, 'node'),
      socketDir: join(base, 'sockets'),
      logFile: join(base, 'daemon.log'),
      drivers: ['local', 'ebs'],
      configFile: nodeConfig,
      env: ENV,
    });
    await daemon.start();
    expect(await daemon.stop()).toBe(0);
    // The daemon's reconcile found the mounts present and recorded: it kept them.
    const res = await daemon.cli(['volumes', 'inspect', 'flex-db']);
    expect(res.exitCode, res.stderr).toBe(0);
    const view = JSON.parse(res.stdout);
    expect(view.status.mounts).toEqual([expect.objectContaining({ host: NODE, refs: 3, state: 'mounted' })]);
    // kubelet restarted too and retries what it had done: nothing is counted twice.
    await node.ok(['waitforattach', '/dev/xvdf', pvJson]);
    await node.mountPod(POD_B, 'pv-db', pv);
    const again = JSON.parse((await daemon.cli(['volumes', 'inspect', 'flex-db'])).stdout || '{}');
    expect(again.status.mounts).toEqual([expect.objectContaining({ refs: 3 })]);
    expect(await readFile(join(node.podDir(POD_A, 'pv-db'), 'f'), 'utf8')).toBe('from-pod-a');
  });

  it('unmounts the pods and the device, then the controller detaches; retries are harmless', async () => {
    await node.unmountPod(POD_A, 'pv-db');
    await node.unmountPod(POD_B, 'pv-db');
    await node.ok(['unmount', node.podDir(POD_B, 'pv-db')]);
    const dmp = node.deviceMountPath('flex-db');
    await node.ok(['unmountdevice', dmp]);
    await node.ok(['unmountdevice', dmp]);
    expect((await mountPoints()).filter((p) => p.startsWith(base))).toEqual([]);
    await controller.ok(['detach', 'flex-db', NODE]);
    await controller.ok(['detach', 'flex-db', NODE]);
    expect(ebsVolume()).toMatchObject({ state: 'available', attachments: [] });
    expect(await controller.ok(['isattached', pvJson, NODE])).toEqual({ status: 'Success', attached: false });
    expect(ec2.maxConcurrentAttachments(ebsVolume()!.volumeId)).toBe(1);
    // The data is on the disk: attach, mount and read it again.
    await controller.ok(['attach', pvJson, NODE]);
    const { device } = await node.ok(['waitforattach', '/dev/xvdf', pvJson]);
    await node.ok(['mountdevice', dmp, String(device), pvJson]);
    expect(await readFile(join(dmp, 'f'), 'utf8')).toBe('from-pod-a');
    await node.ok(['unmountdevice', dmp]);
    await controller.ok(['detach', 'flex-db', NODE]);
    expect(ebsVolume()).toMatchObject({ state: 'available', attachments: [] });
  });

  it('fails clearly for an unknown node and for paths outside kubelet directories', async () => {
    expect(await controller.fails(['attach', pvJson, 'ip-10-9-9-9.ec2.internal'])).toBe(
      'node ip-10-9-9-9.ec2.internal is not a registered stowage host and EC2 has no instance with that private DNS name; run the stowage DaemonSet (or `stowage hosts register`) on it',
    );
    expect(await node.fails(['mountdevice', '/mnt', '/dev/loop0', pvJson])).toMatch(
      /^\/mnt is not a device mount path of this driver/,
    );
    expect(await controller.fails(['attach', pvJson])).toBe('the node name argument is missing');
    expect(ebsVolume()?.attachments).toEqual([]);
  });
});

describe('flexvolume ebs: volume expansion (expandvolume on the controller, expandfs on the node)', () => {
  const GiB = 1024 ** 3;
  const POD_C = '3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f';
  const growPv = pvOptions('pv-grow', { name: 'flex-grow', size: '1' });
  const growJson = JSON.stringify(growPv);
  const grown = () => ec2.volumes.find((v) => v.tags.Name === 'flex-grow' && v.state !== 'deleted');
  const sizes = [String(2 * GiB), String(GiB)];
  let device: string;
  let dmp: string;
  const ours = async () => (await mountPoints()).filter((p) => p.startsWith(base));

  it('refuses size arguments that are not positive whole numbers, or that shrink', async () => {
    const path = node.deviceMountPath('flex-grow');
    expect(await controller.fails(['expandvolume', growJson, path, '2Gi', String(GiB)])).toBe(
      'the new size "2Gi" is not a positive whole number of bytes',
    );
    expect(await controller.fails(['expandvolume', growJson, path, String(GiB), '0'])).toBe(
      'the old size "0" is not a positive whole number of bytes',
    );
    expect(await node.fails(['expandfs', growJson, '/dev/xvdf', path, String(GiB), String(2 * GiB)])).toBe(
      `the new size ${GiB} bytes is smaller than the old size ${2 * GiB} bytes: volumes only grow`,
    );
    expect(ec2.calls.filter((c) => c.action === 'ModifyVolume')).toEqual([]);
  });

  it('grows the EBS volume from the controller and answers the new size; a retry changes nothing', async () => {
    const attached = await controller.ok(['attach', growJson, NODE]);
    device = String((await node.ok(['waitforattach', String(attached.device), growJson])).device);
    dmp = node.deviceMountPath('flex-grow');
    await mkdir(dmp, { recursive: true, mode: 0o750 });
    await node.ok(['mountdevice', dmp, device, growJson]);
    await writeFile(join(dmp, 'data'), 'written at 1 GiB');

    const reply = await controller.ok(['expandvolume', growJson, dmp, ...sizes]);
    expect(reply).toEqual({ status: 'Success', volumeNewSize: 2 * GiB });
    expect(grown()).toMatchObject({
      sizeGiB: 2,
      modification: {
        originalSizeGiB: 1,
        targetSizeGiB: 2,
        state: expect.stringMatching(/^(optimizing|completed)$/),
      },
    });
    // The node's disk has the new size (the endpoint grew the image and ran losetup -c).
    const { stdout } = await execa('blockdev', ['--getsize64', device]);
    expect(Number(stdout)).toBe(2 * GiB);
    // The controller lost the reply and calls again: no second ModifyVolume.
    expect(await controller.ok(['expandvolume', growJson, dmp, ...sizes])).toEqual(reply);
    expect(ec2.calls.filter((c) => c.action === 'ModifyVolume')).toHaveLength(1);
    expect(ec2.errors).toEqual([]);
  });

  it('refuses expandfs while a pod uses the volume (online resize is impossible here); nothing is unmounted', async () => {
    await node.mountPod(POD_C, 'pv-grow', growPv);
    const before = await ours();
    const message = await node.fails(['expandfs', growJson, device, dmp, ...sizes]);
    expect(message).toMatch(
      new RegExp(
        `^the filesystem of volume flex-grow cannot grow now: it is used on host ${NODE.replace(/\./g, '\\.')} by pod ${POD_C}; ` +
          'growing it while mounted failed \\(online resize2fs of /dev/loop\\d+ failed \\(exit 1\\): .*Permission denied to resize filesystem\\), ' +
          'and it is grown unmounted only when no pod or container uses it: it grows on a retry after they have stopped$',
      ),
    );
    expect(await ours()).toEqual(before);
    expect(await readFile(join(node.podDir(POD_C, 'pv-grow'), 'data'), 'utf8')).toBe('written at 1 GiB');
    await node.unmountPod(POD_C, 'pv-grow');
  });

  it('grows the filesystem once only kubelet mounts it: data intact, device mount in place; retries are harmless', async () => {
    const before = await ours();
    expect(before).toContain(dmp);
    await node.ok(['expandfs', growJson, device, dmp, ...sizes]);
    const fs = await statfs(dmp);
    expect(fs.blocks * fs.bsize).toBeGreaterThan(1.9 * GiB);
    expect(await readFile(join(dmp, 'data'), 'utf8')).toBe('written at 1 GiB');
    expect(await ours()).toEqual(before);
    await writeFile(join(dmp, 'more'), 'written at 2 GiB');
    // kubelet lost the reply and calls again: the filesystem already fills the device.
    await node.ok(['expandfs', growJson, device, dmp, ...sizes]);
    expect((await statfs(dmp)).blocks).toBe(fs.blocks);
    expect(await ours()).toEqual(before);
    // A pod mounted afterwards sees the data and the new size.
    await node.mountPod(POD_C, 'pv-grow', growPv);
    const pod = node.podDir(POD_C, 'pv-grow');
    expect(await readFile(join(pod, 'more'), 'utf8')).toBe('written at 2 GiB');
    expect((await statfs(pod)).blocks).toBe(fs.blocks);
    await node.unmountPod(POD_C, 'pv-grow');
    await node.ok(['unmountdevice', dmp]);
    await controller.ok(['detach', 'flex-grow', NODE]);
    expect(grown()).toMatchObject({ state: 'available', sizeGiB: 2, attachments: [] });
    expect(await ours()).toEqual([]);
  });

  it('answers Not supported to expandvolume and expandfs for nfs, without loading anything', async () => {
    const pluginDir = join(base, 'plugins-nfs');
    await installDrivers(pluginDir, ['nfs']);
    const nfs = new KubeletSim({ pluginDir, kubeletDir: join(base, 'kubelet'), driver: 'nfs', env: {} });
    const json = JSON.stringify(pvOptions('pv-share', { server: '127.0.0.1', share: '/export' }));
    for (const args of [
      ['expandvolume', json, '/var/lib/kubelet/x', ...sizes],
      ['expandfs', json, '', '/var/lib/kubelet/x', ...sizes],
    ]) {
      const res = await nfs.call(args);
      expect(res.reply).toEqual({
        status: 'Not supported',
        message: `stowage/nfs does not implement ${args[0]}`,
      });
      expect(res.exitCode).toBe(0);
    }
  });
});
