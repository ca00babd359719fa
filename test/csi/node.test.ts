import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { nodeCapabilities } from '../../csi/node.js';
import { type DriverName, driverTraits } from '../../drivers/catalog.js';
import { csiPublishMountId, stageMountId } from '../../src/core/mount-ids.js';
import { FAKE_USAGE } from '../fakes/fake-file-ops.js';
import { TEST_HOST } from '../helpers/runtime.js';
import { mountCap, type NodeHarness, startNodePlugin, statusOf } from './node-harness.js';

/**
 * The CSI node service (csi/node.ts) over the fake kernel and a real SQLite store, called through
 * gRPC on a unix socket as kubelet calls it: each RPC's checks and status codes, with nothing
 * changed by a refused call, and every call repeated.
 */

const POD_A = '0b7c1d54-5f3a-4e8b-9c61-3a2f1e0d9c8b';
const POD_B = '11111111-2222-4333-8444-555555555555';

let h: NodeHarness;

beforeEach(async () => {
  h = await startNodePlugin();
  await h.t.manager.create('local', 'v1', {});
});

afterEach(async () => {
  await h.close();
});

const staging = () =>
  join(h.kubelet, 'plugins', 'kubernetes.io', 'csi', 'local.csi.stowage.io', 'abc', 'globalmount');
const target = (pod = POD_A) => join(h.kubelet, 'pods', pod, 'volumes', 'kubernetes.io~csi', 'v1', 'mount');
const mountpoint = () => h.t.manager.mountpointFor('v1');

function node(method: string, req: Record<string, unknown>) {
  return h.client.call('Node', method as never, req as never);
}

const stage = (over: Record<string, unknown> = {}) =>
  node('NodeStageVolume', {
    volumeId: 'v1',
    stagingTargetPath: staging(),
    volumeCapability: mountCap(),
    ...over,
  });
const publish = (pod = POD_A, over: Record<string, unknown> = {}) =>
  node('NodePublishVolume', {
    volumeId: 'v1',
    stagingTargetPath: staging(),
    targetPath: target(pod),
    volumeCapability: mountCap(),
    ...over,
  });
const unpublish = (pod = POD_A) => node('NodeUnpublishVolume', { volumeId: 'v1', targetPath: target(pod) });
const unstage = () => node('NodeUnstageVolume', { volumeId: 'v1', stagingTargetPath: staging() });

async function refs(): Promise<Record<string, number>> {
  return (await h.t.store.getMounts('v1')).find((m) => m.host === TEST_HOST)?.refs ?? {};
}

/** What a refused call must leave as it was: the mount table and this host's counts. */
async function snapshot() {
  return {
    table: [...h.t.mounter.table.keys()].sort(),
    refs: await refs(),
    intents: await h.t.store.listIntents(TEST_HOST),
  };
}

describe('NodeGetCapabilities and NodeGetInfo', () => {
  it('advertises staging, stats, condition and single-node multi-writer; a mount group for local and ebs; expansion for ebs', async () => {
    const caps = (driver: DriverName) => nodeCapabilities({ traits: driverTraits(driver)! });
    const common = [
      'STAGE_UNSTAGE_VOLUME',
      'GET_VOLUME_STATS',
      'VOLUME_CONDITION',
      'SINGLE_NODE_MULTI_WRITER',
    ];
    expect(caps('local')).toEqual([...common, 'VOLUME_MOUNT_GROUP']);
    expect(caps('ebs')).toEqual([...common, 'VOLUME_MOUNT_GROUP', 'EXPAND_VOLUME']);
    expect(caps('nfs')).toEqual(common);
    expect(caps('efs')).toEqual(common);
    const res = await node('NodeGetCapabilities', {});
    expect(res.capabilities.map((c: { rpc: { type: string } }) => c.rpc.type)).toEqual([
      ...common,
      'VOLUME_MOUNT_GROUP',
    ]);
  });

  it("answers the store's host id and the host topology of a local volume", async () => {
    const res = await node('NodeGetInfo', {});
    expect(res.nodeId).toBe(TEST_HOST);
    expect(res.accessibleTopology.segments).toEqual({ 'topology.stowage.io/host': TEST_HOST });
    expect(Number(res.maxVolumesPerNode)).toBe(0);
  });

  it('answers UNIMPLEMENTED for NodeExpandVolume where the driver does not grow filesystems on the node', async () => {
    expect(await statusOf(node('NodeExpandVolume', { volumeId: 'v1', volumePath: target() }))).toBe(
      'UNIMPLEMENTED',
    );
  });
});

describe('stage, publish for two pods, unpublish, unstage', () => {
  it('mounts once, counts the stage and each pod, binds each path; every call repeated changes nothing', async () => {
    await stage();
    await stage();
    expect(await refs()).toEqual({ [stageMountId(staging())]: 1 });
    expect(h.t.mounter.table.get(staging())).toMatchObject({ options: ['bind'] });

    await publish(POD_A);
    await publish(POD_A);
    await publish(POD_B, { readonly: true });
    await publish(POD_B, { readonly: true });
    expect(await refs()).toEqual({
      [stageMountId(staging())]: 1,
      [csiPublishMountId(target(POD_A))]: 1,
      [csiPublishMountId(target(POD_B))]: 1,
    });
    expect(csiPublishMountId(target(POD_A))).toBe(`pod:${POD_A}:csi_v1`);
    expect(h.t.mounter.table.get(target(POD_A))).toMatchObject({ options: ['bind'] });
    expect(h.t.mounter.table.get(target(POD_B))).toMatchObject({ options: ['bind', 'ro'] });

    await unpublish(POD_A);
    await unpublish(POD_A);
    await unpublish(POD_B);
    expect(h.t.mounter.table.has(target(POD_A))).toBe(false);
    // The spec: the plugin deletes the target directory it made.
    expect(existsSync(target(POD_A))).toBe(false);
    expect(existsSync(target(POD_B))).toBe(false);
    expect(await h.t.mounter.isMountPoint(mountpoint())).toBe(true);
    expect(await refs()).toEqual({ [stageMountId(staging())]: 1 });

    await unstage();
    await unstage();
    expect(await h.t.store.getMounts('v1')).toEqual([]);
    expect([...h.t.mounter.table.keys()]).toEqual([]);
    expect(await h.t.store.listIntents(TEST_HOST)).toEqual([]);
  });

  it('a read-only access mode or an ro mount flag binds read-only; other allowed flags go on the bind', async () => {
    await stage();
    await publish(POD_A, { volumeCapability: mountCap('SINGLE_NODE_READER_ONLY') });
    expect(h.t.mounter.table.get(target(POD_A))).toMatchObject({ options: ['bind', 'ro'] });
    await publish(POD_B, {
      volumeCapability: mountCap('SINGLE_NODE_WRITER', { mountFlags: ['ro', 'noexec', 'nosuid'] }),
    });
    expect(h.t.mounter.table.get(target(POD_B))).toMatchObject({
      options: ['bind', 'ro', 'noexec', 'nosuid'],
    });
  });

  it('keeps a Docker user of the volume mounted through unpublish and unstage', async () => {
    const docker = `d0${'0'.repeat(62)}`;
    await h.t.manager.mount('local', 'v1', docker);
    await stage();
    await publish();
    await unpublish();
    await unstage();
    expect(await refs()).toEqual({ [docker]: 1 });
    expect(await h.t.mounter.isMountPoint(mountpoint())).toBe(true);
  });

  it('gives the volume root to volume_mount_group (group rwx, setgid) before the bind', async () => {
    await stage();
    await publish(POD_A, { volumeCapability: mountCap('SINGLE_NODE_WRITER', { volumeMountGroup: '2000' }) });
    expect(h.t.files.groups.get(mountpoint())).toBe(2000);
  });

  it('refuses a mount group the filesystem does not take, and leaves no count or bind behind', async () => {
    await stage();
    const before = await snapshot();
    h.t.files.failShareWith = new Error('chgrp: changing group of /x: Operation not permitted');
    const err = await publish(POD_A, {
      volumeCapability: mountCap('SINGLE_NODE_WRITER', { volumeMountGroup: '2000' }),
    }).catch((e: Error) => e);
    expect(err.message).toContain('could not be given to group 2000');
    expect(await snapshot()).toEqual(before);
  });

  it('leaves a target directory that holds files (written while nothing was mounted) in place', async () => {
    await stage();
    await publish();
    h.t.mounter.vanish(target()); // unmounted by hand; then something wrote into the directory
    await writeFile(join(target(), 'stray'), 'x');
    await unpublish();
    expect(existsSync(join(target(), 'stray'))).toBe(true);
    expect(await refs()).toEqual({ [stageMountId(staging())]: 1 });
  });

  it('takes a path with a trailing slash as the same path', async () => {
    await stage({ stagingTargetPath: `${staging()}/` });
    await publish(POD_A, { targetPath: `${target()}/`, stagingTargetPath: `${staging()}/` });
    await publish(POD_A);
    expect(await refs()).toEqual({ [stageMountId(staging())]: 1, [csiPublishMountId(target())]: 1 });
    await unpublish();
    await unstage();
    expect(await h.t.store.getMounts('v1')).toEqual([]);
  });

  it('unpublish and unstage of what was never published or staged are success', async () => {
    await unpublish();
    await unstage();
    await node('NodeUnpublishVolume', { volumeId: 'gone', targetPath: target() });
    expect(await h.t.store.getMounts('v1')).toEqual([]);
  });
});

describe('refusals: the spec status code, nothing changed', () => {
  const cases: [string, () => Promise<unknown>, string][] = [
    ['stage without volume_id', () => stage({ volumeId: '' }), 'INVALID_ARGUMENT'],
    ['stage without staging_target_path', () => stage({ stagingTargetPath: '' }), 'INVALID_ARGUMENT'],
    ['stage without volume_capability', () => stage({ volumeCapability: null }), 'INVALID_ARGUMENT'],
    ['stage of an unknown volume', () => stage({ volumeId: 'nope' }), 'NOT_FOUND'],
    ['stage of an id that cannot be a volume', () => stage({ volumeId: 'a/../b' }), 'NOT_FOUND'],
    [
      'stage with a multi-node mode',
      () => stage({ volumeCapability: mountCap('MULTI_NODE_MULTI_WRITER') }),
      'FAILED_PRECONDITION',
    ],
    [
      'stage with the block access type',
      () => stage({ volumeCapability: { accessMode: { mode: 'SINGLE_NODE_WRITER' }, block: {} } }),
      'INVALID_ARGUMENT',
    ],
    [
      'stage outside the kubelet dir',
      () => stage({ stagingTargetPath: '/tmp/stowage-csi-elsewhere' }),
      'INVALID_ARGUMENT',
    ],
    [
      'stage at a path that climbs out',
      () => stage({ stagingTargetPath: `${h.kubelet}/../etc` }),
      'INVALID_ARGUMENT',
    ],
    [
      'stage beside the kubelet dir',
      () => stage({ stagingTargetPath: `${h.kubelet}-evil/globalmount` }),
      'INVALID_ARGUMENT',
    ],
    ['stage at the kubelet dir itself', () => stage({ stagingTargetPath: h.kubelet }), 'INVALID_ARGUMENT'],
    [
      'stage at a relative path',
      () => stage({ stagingTargetPath: 'kubelet/globalmount' }),
      'INVALID_ARGUMENT',
    ],
    [
      'stage with another fs_type',
      () => stage({ volumeCapability: mountCap('SINGLE_NODE_WRITER', { fsType: 'xfs' }) }),
      'INVALID_ARGUMENT',
    ],
    [
      'stage with an unknown mount flag',
      () => stage({ volumeCapability: mountCap('SINGLE_NODE_WRITER', { mountFlags: ['data=journal'] }) }),
      'INVALID_ARGUMENT',
    ],
    [
      'unstage without volume_id',
      () => node('NodeUnstageVolume', { stagingTargetPath: staging() }),
      'INVALID_ARGUMENT',
    ],
    [
      'unstage without staging_target_path',
      () => node('NodeUnstageVolume', { volumeId: 'v1' }),
      'INVALID_ARGUMENT',
    ],
    ['publish without volume_id', () => publish(POD_A, { volumeId: '' }), 'INVALID_ARGUMENT'],
    ['publish without target_path', () => publish(POD_A, { targetPath: '' }), 'INVALID_ARGUMENT'],
    [
      'publish without volume_capability',
      () => publish(POD_A, { volumeCapability: null }),
      'INVALID_ARGUMENT',
    ],
    ['publish of an unknown volume', () => publish(POD_A, { volumeId: 'nope' }), 'NOT_FOUND'],
    [
      'publish outside the kubelet dir',
      () => publish(POD_A, { targetPath: '/tmp/stowage-csi-elsewhere' }),
      'INVALID_ARGUMENT',
    ],
    [
      'publish with a multi-node mode',
      () => publish(POD_A, { volumeCapability: mountCap('MULTI_NODE_READER_ONLY') }),
      'FAILED_PRECONDITION',
    ],
    [
      'publish without staging_target_path',
      () => publish(POD_A, { stagingTargetPath: '' }),
      'FAILED_PRECONDITION',
    ],
    ['publish of a volume not staged', () => publish(POD_A), 'FAILED_PRECONDITION'],
    [
      'publish with a non-numeric mount group',
      () =>
        publish(POD_A, { volumeCapability: mountCap('SINGLE_NODE_WRITER', { volumeMountGroup: 'staff' }) }),
      'INVALID_ARGUMENT',
    ],
    [
      'unpublish without target_path',
      () => node('NodeUnpublishVolume', { volumeId: 'v1' }),
      'INVALID_ARGUMENT',
    ],
    [
      'unpublish outside the kubelet dir',
      () => node('NodeUnpublishVolume', { volumeId: 'v1', targetPath: '/mnt' }),
      'INVALID_ARGUMENT',
    ],
  ];
  for (const [what, call, code] of cases) {
    it(`${what}: ${code}`, async () => {
      const before = await snapshot();
      expect(await statusOf(call())).toBe(code);
      expect(await snapshot()).toEqual(before);
    });
  }

  it('a second publish at the same target read-only where it is read-write: ALREADY_EXISTS, the bind kept', async () => {
    await stage();
    await publish();
    const before = await snapshot();
    expect(await statusOf(publish(POD_A, { readonly: true }))).toBe('ALREADY_EXISTS');
    expect(await statusOf(publish(POD_A, { volumeCapability: mountCap('SINGLE_NODE_READER_ONLY') }))).toBe(
      'ALREADY_EXISTS',
    );
    expect(await snapshot()).toEqual(before);
    expect(h.t.mounter.table.get(target())).toMatchObject({ options: ['bind'] });
  });

  it('SINGLE_NODE_SINGLE_WRITER (ReadWriteOncePod) at a second target while another pod has it: FAILED_PRECONDITION', async () => {
    await stage();
    const single = { volumeCapability: mountCap('SINGLE_NODE_SINGLE_WRITER') };
    await publish(POD_A, single);
    await publish(POD_A, single); // the same target again: idempotent
    const before = await snapshot();
    expect(await statusOf(publish(POD_B, single))).toBe('FAILED_PRECONDITION');
    expect(await snapshot()).toEqual(before);
    await unpublish(POD_A);
    await publish(POD_B, single); // the first pod gone: the second may have it
    expect(await statusOf(publish(POD_A, single))).toBe('FAILED_PRECONDITION');
  });
});

describe('NodeGetVolumeStats', () => {
  it('reports bytes and inodes of the filesystem at a published target or the staging path', async () => {
    await stage();
    await publish();
    for (const path of [target(), staging()]) {
      const res = await node('NodeGetVolumeStats', { volumeId: 'v1', volumePath: path });
      expect(res.volumeCondition).toEqual({ abnormal: false, message: 'mounted' });
      const byUnit = Object.fromEntries(
        res.usage.map((u: { unit: string; total: string; used: string; available: string }) => [
          u.unit,
          [Number(u.total), Number(u.used), Number(u.available)],
        ]),
      );
      expect(byUnit).toEqual({
        BYTES: [FAKE_USAGE.totalBytes, FAKE_USAGE.usedBytes, FAKE_USAGE.availableBytes],
        INODES: [FAKE_USAGE.totalInodes, FAKE_USAGE.usedInodes, FAKE_USAGE.availableInodes],
      });
    }
  });

  it('reports an abnormal condition, without usage, when the mount is gone behind the store', async () => {
    await stage();
    await publish();
    h.t.mounter.vanish(mountpoint());
    const res = await node('NodeGetVolumeStats', { volumeId: 'v1', volumePath: target() });
    expect(res.volumeCondition.abnormal).toBe(true);
    expect(res.volumeCondition.message).toContain('no longer mounted');
    expect(res.usage).toEqual([]);
    h.t.mounter.table.set(mountpoint(), { source: '/dev/loop0', fsType: 'ext4', options: [] });
    h.t.mounter.vanish(target());
    const bare = await node('NodeGetVolumeStats', { volumeId: 'v1', volumePath: target() });
    expect(bare.volumeCondition).toMatchObject({ abnormal: true });
    expect(bare.volumeCondition.message).toContain(`nothing is mounted at ${target()}`);
  });

  it('NOT_FOUND for a path where the volume is not published, or a volume that does not exist', async () => {
    await stage();
    expect(await statusOf(node('NodeGetVolumeStats', { volumeId: 'v1', volumePath: target() }))).toBe(
      'NOT_FOUND',
    );
    expect(await statusOf(node('NodeGetVolumeStats', { volumeId: 'v1', volumePath: 'some/path' }))).toBe(
      'NOT_FOUND',
    );
    expect(await statusOf(node('NodeGetVolumeStats', { volumeId: 'nope', volumePath: staging() }))).toBe(
      'NOT_FOUND',
    );
    expect(await statusOf(node('NodeGetVolumeStats', { volumeId: 'v1', volumePath: '' }))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(await statusOf(node('NodeGetVolumeStats', { volumeId: '', volumePath: staging() }))).toBe(
      'INVALID_ARGUMENT',
    );
  });
});

describe('NodeExpandVolume (drivers that grow filesystems on the node)', () => {
  beforeEach(async () => {
    await h.close();
    h = await startNodePlugin({ traits: { requiresFSResize: true } });
    await h.t.manager.create('local', 'v1', {});
  });

  it('grows the filesystem of a published volume online once its device shows the size; repeated, nothing more', async () => {
    await stage();
    await publish();
    const disk = h.t.loop.diskOf(join(h.t.config.local.imageDir!, 'v1.img'));
    disk.sizeBytes = 2 * 1024 ** 3;
    const req = {
      volumeId: 'v1',
      volumePath: target(),
      capacityRange: { requiredBytes: String(2 * 1024 ** 3) },
    };
    const res = await node('NodeExpandVolume', req);
    expect(disk.fsSizeBytes).toBe(2 * 1024 ** 3);
    expect(Number(res.capacityBytes)).toBe(FAKE_USAGE.totalBytes);
    await node('NodeExpandVolume', req);
    expect(h.t.mounter.count('resize')).toBe(2); // resize2fs of a full filesystem is a no-op
    expect(h.t.mounter.table.has(target())).toBe(true);
  });

  it('NOT_FOUND where the volume is not published; INVALID_ARGUMENT without a path or with the block type', async () => {
    await stage();
    expect(await statusOf(node('NodeExpandVolume', { volumeId: 'v1', volumePath: target() }))).toBe(
      'NOT_FOUND',
    );
    expect(await statusOf(node('NodeExpandVolume', { volumeId: 'v1', volumePath: '' }))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(
      await statusOf(
        node('NodeExpandVolume', {
          volumeId: 'v1',
          volumePath: staging(),
          volumeCapability: { accessMode: { mode: 'SINGLE_NODE_WRITER' }, block: {} },
        }),
      ),
    ).toBe('INVALID_ARGUMENT');
    expect(h.t.mounter.count('resize')).toBe(0);
  });
});

describe('paths', () => {
  it('makes the target directory itself (kubelet makes only its parent)', async () => {
    await stage();
    await mkdir(join(target(), '..'), { recursive: true });
    await publish();
    expect(existsSync(target())).toBe(true);
  });
});

describe('nfs volumes (every access mode, no mount group)', () => {
  beforeEach(async () => {
    await h.close();
    h = await startNodePlugin({
      driver: 'nfs',
      runtime: { flags: { drivers: ['local', 'nfs'], nfs: { server: 'nfs1', share: '/exports' } } },
    });
    const server = join(h.t.dir, 'server');
    await mkdir(join(server, 'exports'), { recursive: true });
    h.t.mounter.nfsServers.set('nfs1', server);
    await h.t.manager.create('nfs', 'v1', {});
  });

  it('stages and publishes for many writers with fs_type nfs4; unpublish and unstage undo all', async () => {
    const many = mountCap('MULTI_NODE_MULTI_WRITER', { fsType: 'nfs4' });
    await stage({ volumeCapability: many });
    await publish(POD_A, { volumeCapability: many });
    await publish(POD_B, { volumeCapability: mountCap('MULTI_NODE_READER_ONLY') });
    expect(h.t.mounter.table.get(mountpoint())).toMatchObject({ fsType: 'nfs4' });
    expect(h.t.mounter.table.get(target(POD_B))).toMatchObject({ options: ['bind', 'ro'] });
    expect(Object.keys(await refs())).toHaveLength(3);
    await unpublish(POD_A);
    await unpublish(POD_B);
    await unstage();
    expect(await h.t.store.getMounts('v1')).toEqual([]);
    expect([...h.t.mounter.table.keys()]).toEqual([]);
  });

  it('refuses a block filesystem type and a mount group, changing nothing', async () => {
    const before = await snapshot();
    const ext4 = mountCap('MULTI_NODE_MULTI_WRITER', { fsType: 'ext4' });
    expect(await statusOf(stage({ volumeCapability: ext4 }))).toBe('INVALID_ARGUMENT');
    const grouped = mountCap('MULTI_NODE_MULTI_WRITER', { volumeMountGroup: '2000' });
    expect(await statusOf(stage({ volumeCapability: grouped }))).toBe('INVALID_ARGUMENT');
    expect(await snapshot()).toEqual(before);
    const caps = (await node('NodeGetCapabilities', {})).capabilities.map(
      (c: { rpc: { type: string } }) => c.rpc.type,
    );
    expect(caps).not.toContain('VOLUME_MOUNT_GROUP');
  });
});
