import { status } from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TOPOLOGY_ZONE } from '../../csi/context.js';
import type { ControllerPart } from '../../csi/plugin.js';
import { driverTraits } from '../../drivers/catalog.js';
import { registerBuiltins } from '../../drivers/index.js';
import type { AttachTarget, Driver, ExpandResult } from '../../src/core/driver.js';
import { boolOption } from '../../src/core/option-schemas.js';
import { DriverRegistry } from '../../src/core/registry.js';
import type { VolumeRecord } from '../../src/state/store.js';
import { createTestRuntime, TEST_HOST, type TestRuntime } from '../helpers/runtime.js';
import { controllerFor, createRequest, GiB, mountCap, range, statusOf } from './controller-harness.js';
import { DISK_OPTION_SPECS, FakeAttachableDisk } from './sanity-harness.js';

/**
 * The controller RPCs of an attachable, zonal, growable driver (ebs's traits) over a fake cloud
 * disk: publish = attach through the core's arbitration, unpublish = detach, expansion in GiB,
 * the zone from the topology. The real ebs driver runs in test/e2e/csi-controller-ebs.test.ts.
 */
class FakeCloudDisk extends FakeAttachableDisk {
  override readonly optionSpecs = {
    ...DISK_OPTION_SPECS,
    preempt: { schema: boolOption, help: 'take over' },
  };
  protected override readonly defaults = { size: '10', fsType: 'ext4', preempt: 'false' };
  /** The cloud calls, in order, with the host each attach or detach was for. */
  readonly calls: string[] = [];
  override async attach(vol: { name: string }, target?: AttachTarget) {
    this.calls.push(`attach ${vol.name} ${target?.host ?? TEST_HOST}`);
    return super.attach(vol, target);
  }
  override async detach(vol: { name: string }, a: unknown, target?: AttachTarget) {
    this.calls.push(`detach ${vol.name} ${target?.host ?? TEST_HOST}`);
    return super.detach(vol, a, target);
  }
  override async expand(vol: VolumeRecord, bytes: number): Promise<ExpandResult> {
    this.calls.push(`expand ${vol.name} ${bytes / GiB}`);
    return super.expand(vol, bytes);
  }
}

let t: TestRuntime;
let disk: FakeCloudDisk;
let c: ControllerPart;
const rpc = () => c.rpcs as Required<ControllerPart['rpcs']>;
const publish = (over: Record<string, unknown> = {}) =>
  rpc().ControllerPublishVolume({
    volumeId: 'pvc-1',
    nodeId: 'node-b',
    volumeCapability: mountCap('SINGLE_NODE_WRITER'),
    readonly: false,
    secrets: {},
    volumeContext: {},
    ...over,
  });
const unpublish = (nodeId: string, volumeId = 'pvc-1') =>
  rpc().ControllerUnpublishVolume({ volumeId, nodeId, secrets: {} });
const attachedTo = async () => (await t.store.getAttachments('pvc-1')).map((a) => `${a.host} ${a.state}`);

beforeEach(async () => {
  disk = new FakeCloudDisk();
  const registry = new DriverRegistry();
  await registerBuiltins(registry);
  registry.register('disk', () => disk as unknown as Driver);
  t = await createTestRuntime({ registry, flags: { drivers: ['local', 'disk'] } });
  for (const id of ['node-b', 'node-c']) {
    await t.store.upsertHost({ id, identity: { hostname: `${id}.example` }, lastSeen: 'now' });
  }
  c = controllerFor(t, 'disk', driverTraits('ebs'));
  await rpc().CreateVolume(createRequest({ capacityRange: range(3 * GiB) }));
});

afterEach(async () => {
  await t.cleanup();
});

describe('capabilities of an attachable, growable driver', () => {
  it('adds publish, published nodes and expansion; no capacity', () => {
    expect([...c.capabilities].sort()).toEqual(
      [
        'CREATE_DELETE_VOLUME',
        'EXPAND_VOLUME',
        'GET_VOLUME',
        'LIST_VOLUMES',
        'LIST_VOLUMES_PUBLISHED_NODES',
        'PUBLISH_UNPUBLISH_VOLUME',
        'SINGLE_NODE_MULTI_WRITER',
      ].sort(),
    );
    expect(c.rpcs.GetCapacity).toBeUndefined();
  });
});

describe('CreateVolume with a zone', () => {
  it('takes the zone of the first preferred topology, else the first requisite; reports it', async () => {
    const res = await rpc().CreateVolume(
      createRequest({
        name: 'z1',
        accessibilityRequirements: {
          requisite: [
            { segments: { [TOPOLOGY_ZONE]: 'zone-c' } },
            { segments: { [TOPOLOGY_ZONE]: 'zone-b' } },
          ],
          preferred: [{ segments: { [TOPOLOGY_ZONE]: 'zone-b' } }],
        },
      }),
    );
    expect(res.volume.accessibleTopology).toEqual([{ segments: { [TOPOLOGY_ZONE]: 'zone-b' } }]);
    const req = await rpc().CreateVolume(
      createRequest({
        name: 'z2',
        accessibilityRequirements: {
          requisite: [{ segments: { [TOPOLOGY_ZONE]: 'zone-c' } }],
          preferred: [],
        },
      }),
    );
    expect(req.volume.accessibleTopology).toEqual([{ segments: { [TOPOLOGY_ZONE]: 'zone-c' } }]);
  });

  it('a zone parameter outside the requisite zones is RESOURCE_EXHAUSTED; sizes round up to GiB and a limit below 1 GiB is OUT_OF_RANGE', async () => {
    const req = createRequest({
      name: 'z3',
      parameters: { availabilityZone: 'zone-a' },
      accessibilityRequirements: { requisite: [{ segments: { [TOPOLOGY_ZONE]: 'zone-c' } }], preferred: [] },
    });
    expect(await statusOf(rpc().CreateVolume(req))).toBe(status.RESOURCE_EXHAUSTED);
    const odd = await rpc().CreateVolume(createRequest({ name: 'z4', capacityRange: range(GiB + 1) }));
    expect(odd.volume.capacityBytes).toBe(2 * GiB);
    expect(
      await statusOf(rpc().CreateVolume(createRequest({ name: 'z5', capacityRange: range(0, GiB - 1) }))),
    ).toBe(status.OUT_OF_RANGE);
    expect((await t.manager.list('disk')).map((v) => v.name).sort()).toEqual(['pvc-1', 'z4']);
  });
});

describe('ControllerPublishVolume / ControllerUnpublishVolume', () => {
  it('attaches to the node and answers its device; a repeat (any single-node mode, readonly or not) answers the same', async () => {
    expect(await publish()).toEqual({ publishContext: { devicePath: '/dev/xvdba' } });
    expect(await publish()).toEqual({ publishContext: { devicePath: '/dev/xvdba' } });
    expect(await publish({ volumeCapability: mountCap('SINGLE_NODE_READER_ONLY'), readonly: true })).toEqual({
      publishContext: { devicePath: '/dev/xvdba' },
    });
    expect(disk.calls).toEqual(['attach pvc-1 node-b']);
    // Found by its hostname too, as the hosts registry knows it.
    expect(await publish({ nodeId: 'node-b.example' })).toEqual({
      publishContext: { devicePath: '/dev/xvdba' },
    });
    const listed = await rpc().ListVolumes({ maxEntries: 0, startingToken: '' });
    expect(listed.entries?.[0]?.status).toEqual({ publishedNodeIds: ['node-b'] });
    expect((await rpc().ControllerGetVolume({ volumeId: 'pvc-1' })).status).toEqual({
      publishedNodeIds: ['node-b'],
    });
  });

  it('another node while attached is FAILED_PRECONDITION naming the first; nothing changes', async () => {
    await publish();
    const err = await rpc()
      .ControllerPublishVolume({
        volumeId: 'pvc-1',
        nodeId: 'node-c',
        volumeCapability: mountCap('SINGLE_NODE_WRITER'),
        readonly: false,
        secrets: {},
        volumeContext: {},
      })
      .catch((e: Error) => e);
    expect(await statusOf(Promise.reject(err))).toBe(status.FAILED_PRECONDITION);
    expect((err as Error).message).toContain('node-b');
    expect(await attachedTo()).toEqual(['node-b attached']);
  });

  it('the spec codes for bad requests, nothing attached', async () => {
    expect(await statusOf(publish({ volumeId: '' }))).toBe(status.INVALID_ARGUMENT);
    expect(await statusOf(publish({ nodeId: '' }))).toBe(status.INVALID_ARGUMENT);
    expect(await statusOf(publish({ volumeCapability: null }))).toBe(status.INVALID_ARGUMENT);
    expect(await statusOf(publish({ volumeCapability: mountCap('MULTI_NODE_MULTI_WRITER') }))).toBe(
      status.INVALID_ARGUMENT,
    );
    expect(await statusOf(publish({ volumeId: 'nope' }))).toBe(status.NOT_FOUND);
    expect(await statusOf(publish({ nodeId: 'some-fake-node-id' }))).toBe(status.NOT_FOUND);
    expect(await statusOf(publish({ nodeId: 'not a node!' }))).toBe(status.NOT_FOUND);
    expect(disk.calls).toEqual([]);
  });

  it('unpublish detaches; again, an unknown volume or node, and an id no volume can have are OK', async () => {
    await publish();
    expect(await unpublish('node-b')).toEqual({});
    expect(await unpublish('node-b')).toEqual({});
    expect(await unpublish('gone-node')).toEqual({});
    expect(await unpublish('node-b', 'nope')).toEqual({});
    expect(await unpublish('node-b', 'not a name')).toEqual({});
    expect(disk.calls).toEqual(['attach pvc-1 node-b', 'detach pvc-1 node-b']);
    expect(await attachedTo()).toEqual([]);
    expect(await statusOf(unpublish('node-b', ''))).toBe(status.INVALID_ARGUMENT);
  });

  it('an empty node id detaches from every node; refused (FAILED_PRECONDITION) while that node mounts it', async () => {
    await publish();
    await t.store.putMount({
      volume: 'pvc-1',
      host: 'node-b',
      mountpoint: '/m',
      refs: { 'device:pvc-1': 1 },
      state: 'mounted',
      updatedAt: 'now',
    });
    expect(await statusOf(unpublish(''))).toBe(status.FAILED_PRECONDITION);
    expect(await attachedTo()).toEqual(['node-b attached']);
    await t.store.deleteMount('pvc-1', 'node-b');
    expect(await unpublish('')).toEqual({});
    expect(await attachedTo()).toEqual([]);
  });
});

describe('ControllerExpandVolume', () => {
  const expand = (requiredBytes: number, limitBytes = 0, volumeId = 'pvc-1') =>
    rpc().ControllerExpandVolume({
      volumeId,
      capacityRange: range(requiredBytes, limitBytes),
      secrets: {},
      volumeCapability: null,
    });

  it('grows to the required bytes rounded up to GiB, the node to grow the filesystem; a repeat is the same', async () => {
    expect(await expand(4 * GiB + 1)).toEqual({ capacityBytes: 5 * GiB, nodeExpansionRequired: true });
    expect(await expand(4 * GiB + 1)).toEqual({ capacityBytes: 5 * GiB, nodeExpansionRequired: true });
    expect((await rpc().ControllerGetVolume({ volumeId: 'pvc-1' })).volume.capacityBytes).toBe(5 * GiB);
  });

  it('a limit below the size it would have, or has, is OUT_OF_RANGE; no range INVALID_ARGUMENT; unknown NOT_FOUND', async () => {
    expect(await statusOf(expand(4 * GiB + 1, 4 * GiB + 10))).toBe(status.OUT_OF_RANGE);
    expect(await statusOf(expand(GiB, 2 * GiB))).toBe(status.OUT_OF_RANGE); // it has 3 GiB
    expect(await statusOf(expand(32 * GiB))).toBe(status.OUT_OF_RANGE); // above the driver's largest
    expect(await statusOf(expand(0, 0))).toBe(status.INVALID_ARGUMENT);
    expect(await statusOf(expand(5 * GiB, 0, 'nope'))).toBe(status.NOT_FOUND);
    expect(disk.calls.filter((x) => x.startsWith('expand'))).toEqual([]);
  });
});
