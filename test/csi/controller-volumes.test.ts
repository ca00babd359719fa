import { status } from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TOPOLOGY_HOST } from '../../csi/context.js';
import type { ControllerPart } from '../../csi/plugin.js';
import { createTestRuntime, TEST_HOST, type TestRuntime } from '../helpers/runtime.js';
import { controllerFor, createRequest, MiB, mountCap, range, statusOf } from './controller-harness.js';

/**
 * The controller's volume RPCs for the local driver: each request checked before anything
 * changes, the spec's status code for each failure, and every call safe to repeat.
 */
let t: TestRuntime;
let c: ControllerPart;
const rpc = () => c.rpcs as Required<ControllerPart['rpcs']>;
const names = async () => (await t.manager.list('local')).map((v) => v.name);

beforeEach(async () => {
  t = await createTestRuntime();
  c = controllerFor(t, 'local');
});

afterEach(async () => {
  await t.cleanup();
});

describe('capabilities', () => {
  it('local: create/delete, list, get, capacity, the single-node writer modes; no publish, no expansion', () => {
    expect(c.capabilities.sort()).toEqual(
      [
        'CREATE_DELETE_VOLUME',
        'GET_CAPACITY',
        'GET_VOLUME',
        'LIST_VOLUMES',
        'SINGLE_NODE_MULTI_WRITER',
      ].sort(),
    );
    expect(Object.keys(c.rpcs).sort()).toEqual(
      [
        'ControllerGetVolume',
        'CreateVolume',
        'DeleteVolume',
        'GetCapacity',
        'ListVolumes',
        'ValidateVolumeCapabilities',
      ].sort(),
    );
  });
});

describe('CreateVolume', () => {
  it('makes the volume with the capacity rounded up to a MiB, this host as its topology; a repeat answers the same', async () => {
    const req = createRequest({ capacityRange: range(100 * MiB + 1), parameters: { fsType: 'ext4' } });
    const first = await rpc().CreateVolume(req);
    expect(first).toEqual({
      volume: {
        volumeId: 'pvc-1',
        capacityBytes: 101 * MiB,
        volumeContext: { 'stowage.io/driver': 'local' },
        accessibleTopology: [{ segments: { [TOPOLOGY_HOST]: TEST_HOST } }],
      },
    });
    expect((await t.manager.get('local', 'pvc-1')).volume.options).toMatchObject({
      size: '101M',
      fsType: 'ext4',
    });
    expect(await rpc().CreateVolume(req)).toEqual(first);
    expect(await names()).toEqual(['pvc-1']);
  });

  it('the same name with another capacity or other parameters is ALREADY_EXISTS, and the volume is left as it was', async () => {
    await rpc().CreateVolume(createRequest({ capacityRange: range(64 * MiB) }));
    expect(await statusOf(rpc().CreateVolume(createRequest({ capacityRange: range(128 * MiB) })))).toBe(
      status.ALREADY_EXISTS,
    );
    expect(
      await statusOf(
        rpc().CreateVolume(createRequest({ capacityRange: range(64 * MiB), parameters: { fsType: 'xfs' } })),
      ),
    ).toBe(status.ALREADY_EXISTS);
    expect((await t.manager.get('local', 'pvc-1')).volume.options).toMatchObject({
      size: '64M',
      fsType: 'ext4',
    });
  });

  it('drops the keys external-provisioner adds (csi.storage.k8s.io/…) and takes the filesystem from the capability', async () => {
    const xfs = [mountCap('SINGLE_NODE_WRITER', 'xfs')];
    await rpc().CreateVolume(
      createRequest({
        volumeCapabilities: xfs,
        parameters: {
          'csi.storage.k8s.io/pvc/name': 'data',
          'csi.storage.k8s.io/pvc/namespace': 'default',
          'csi.storage.k8s.io/pv/name': 'pvc-1',
          size: '300M',
        },
      }),
    );
    const { options, givenOptions } = (await t.manager.get('local', 'pvc-1')).volume;
    expect(options).toEqual({ size: '300M', fsType: 'xfs' });
    expect([...givenOptions].sort()).toEqual(['fsType', 'size']);
    // The parameter and the capability must agree.
    const disagree = createRequest({
      name: 'pvc-2',
      volumeCapabilities: xfs,
      parameters: { fsType: 'ext4' },
    });
    expect(await statusOf(rpc().CreateVolume(disagree))).toBe(status.INVALID_ARGUMENT);
    expect(await names()).toEqual(['pvc-1']);
  });

  it('answers INVALID_ARGUMENT, making nothing, for a missing name, missing or unservable capabilities, an unknown option, a snapshot source', async () => {
    const cases = [
      createRequest({ name: '' }),
      createRequest({ volumeCapabilities: [] }),
      createRequest({ volumeCapabilities: [mountCap('MULTI_NODE_MULTI_WRITER')] }),
      createRequest({
        volumeCapabilities: [{ accessType: 'block', block: {}, accessMode: { mode: 'SINGLE_NODE_WRITER' } }],
      }),
      createRequest({ parameters: { colour: 'blue' } }),
      createRequest({
        volumeContentSource: { type: 'snapshot', snapshot: { snapshotId: 'snap-0123456789abcdef0' } },
      }),
      createRequest({ volumeContentSource: { type: 'volume', volume: { volumeId: 'other' } } }),
    ];
    for (const req of cases) expect(await statusOf(rpc().CreateVolume(req))).toBe(status.INVALID_ARGUMENT);
    const unknown = await rpc()
      .CreateVolume(createRequest({ parameters: { colour: 'blue' } }))
      .catch((e: Error) => e.message);
    expect(unknown).toContain('unknown option "colour"');
    expect(await names()).toEqual([]);
  });

  it('a range that cannot be met is OUT_OF_RANGE, making nothing', async () => {
    for (const capacityRange of [
      range(0, MiB), // below ext4's 8 MiB floor
      range(20 * MiB, 10 * MiB), // required above limit
      range(2 * 1024 ** 4), // above local.maxSize (1T)
    ]) {
      expect(await statusOf(rpc().CreateVolume(createRequest({ capacityRange })))).toBe(status.OUT_OF_RANGE);
    }
    // A size parameter outside the range: neither silently wins.
    expect(
      await statusOf(
        rpc().CreateVolume(createRequest({ capacityRange: range(64 * MiB), parameters: { size: '32M' } })),
      ),
    ).toBe(status.OUT_OF_RANGE);
    expect(await names()).toEqual([]);
  });

  it('with only a limit: the default size (1G) when it fits, else the limit rounded down to a MiB; a small required size is raised to the floor', async () => {
    const a = await rpc().CreateVolume(createRequest({ name: 'a', capacityRange: range(0, 5 * 1024 ** 3) }));
    expect(a.volume.capacityBytes).toBe(1024 ** 3);
    const b = await rpc().CreateVolume(createRequest({ name: 'b', capacityRange: range(0, 100 * MiB + 5) }));
    expect(b.volume.capacityBytes).toBe(100 * MiB);
    const c2 = await rpc().CreateVolume(createRequest({ name: 'c', capacityRange: range(1) }));
    expect(c2.volume.capacityBytes).toBe(8 * MiB);
  });

  it('a requisite topology naming another host is RESOURCE_EXHAUSTED (local volumes are made where asked); this host is fine', async () => {
    const elsewhere = {
      requisite: [{ segments: { [TOPOLOGY_HOST]: 'node-b' } }],
      preferred: [{ segments: { [TOPOLOGY_HOST]: 'node-b' } }],
    };
    expect(await statusOf(rpc().CreateVolume(createRequest({ accessibilityRequirements: elsewhere })))).toBe(
      status.RESOURCE_EXHAUSTED,
    );
    expect(await names()).toEqual([]);
    const here = { requisite: [{ segments: { [TOPOLOGY_HOST]: TEST_HOST } }], preferred: [] };
    const res = await rpc().CreateVolume(createRequest({ accessibilityRequirements: here }));
    expect(res.volume.accessibleTopology).toEqual([{ segments: { [TOPOLOGY_HOST]: TEST_HOST } }]);
  });
});

describe('DeleteVolume', () => {
  it('removes the volume; a repeat, an unknown id and an id no volume can have are OK', async () => {
    await rpc().CreateVolume(createRequest());
    expect(await rpc().DeleteVolume({ volumeId: 'pvc-1', secrets: {} })).toEqual({});
    expect(await names()).toEqual([]);
    expect(await rpc().DeleteVolume({ volumeId: 'pvc-1', secrets: {} })).toEqual({});
    expect(await rpc().DeleteVolume({ volumeId: 'never-made', secrets: {} })).toEqual({});
    expect(await rpc().DeleteVolume({ volumeId: 'not/a name', secrets: {} })).toEqual({});
    expect(await statusOf(rpc().DeleteVolume({ volumeId: '', secrets: {} }))).toBe(status.INVALID_ARGUMENT);
  });

  it('a volume in use is FAILED_PRECONDITION and stays', async () => {
    await rpc().CreateVolume(createRequest());
    await t.manager.mount('local', 'pvc-1', 'container-1');
    expect(await statusOf(rpc().DeleteVolume({ volumeId: 'pvc-1', secrets: {} }))).toBe(
      status.FAILED_PRECONDITION,
    );
    expect(await names()).toEqual(['pvc-1']);
  });
});

describe('ValidateVolumeCapabilities', () => {
  const validate = (over: Record<string, unknown>) =>
    rpc().ValidateVolumeCapabilities({
      volumeId: 'pvc-1',
      volumeContext: {},
      volumeCapabilities: [mountCap('SINGLE_NODE_WRITER')],
      parameters: {},
      secrets: {},
      mutableParameters: {},
      ...over,
    });

  it('confirms what the volume serves, echoing it; says why otherwise', async () => {
    await rpc().CreateVolume(createRequest());
    expect(await validate({ volumeContext: { 'stowage.io/driver': 'local' } })).toEqual({
      confirmed: {
        volumeContext: { 'stowage.io/driver': 'local' },
        volumeCapabilities: [
          {
            accessMode: { mode: 'SINGLE_NODE_WRITER' },
            mount: { fsType: '', mountFlags: [], volumeMountGroup: '' },
          },
        ],
        parameters: {},
        mutableParameters: {},
      },
    });
    const multi = await validate({ volumeCapabilities: [mountCap('MULTI_NODE_MULTI_WRITER')] });
    expect(multi.confirmed).toBeUndefined();
    expect(multi.message).toContain('MULTI_NODE_MULTI_WRITER is not supported');
    const xfs = await validate({ volumeCapabilities: [mountCap('SINGLE_NODE_WRITER', 'xfs')] });
    expect(xfs).toEqual({ message: "the volume's filesystem is ext4, not xfs" });
    expect((await validate({ parameters: { colour: 'x' } })).message).toContain('unknown option "colour"');
  });

  it('an unknown volume is NOT_FOUND; missing capabilities or id INVALID_ARGUMENT', async () => {
    expect(await statusOf(validate({}))).toBe(status.NOT_FOUND);
    await rpc().CreateVolume(createRequest());
    expect(await statusOf(validate({ volumeCapabilities: [] }))).toBe(status.INVALID_ARGUMENT);
    expect(await statusOf(validate({ volumeId: '' }))).toBe(status.INVALID_ARGUMENT);
  });
});

describe('ListVolumes and ControllerGetVolume', () => {
  it('pages through the volumes in name order; a token survives the removal of its last volume', async () => {
    for (const n of ['v5', 'v1', 'v7', 'v3', 'v2', 'v6', 'v4']) {
      await rpc().CreateVolume(createRequest({ name: n, capacityRange: range(8 * MiB) }));
    }
    const seen: string[][] = [];
    let token = '';
    do {
      const res = await rpc().ListVolumes({ maxEntries: 3, startingToken: token });
      seen.push((res.entries ?? []).map((e) => e.volume.volumeId));
      token = res.nextToken ?? '';
      for (const e of res.entries ?? []) expect(e.status).toBeUndefined(); // no published nodes for local
    } while (token !== '');
    expect(seen).toEqual([['v1', 'v2', 'v3'], ['v4', 'v5', 'v6'], ['v7']]);
    const first = await rpc().ListVolumes({ maxEntries: 3, startingToken: '' });
    await rpc().DeleteVolume({ volumeId: 'v3', secrets: {} });
    const next = await rpc().ListVolumes({ maxEntries: 0, startingToken: first.nextToken! });
    expect(next.entries?.map((e) => e.volume.volumeId)).toEqual(['v4', 'v5', 'v6', 'v7']);
    expect(next.nextToken).toBe('');
    expect(next.entries?.[0]?.volume.capacityBytes).toBe(8 * MiB);
  });

  it('a token it did not give is ABORTED; a negative max_entries INVALID_ARGUMENT', async () => {
    for (const startingToken of ['invalid-token', 'x', Buffer.from('v1').toString('base64url')]) {
      expect(await statusOf(rpc().ListVolumes({ maxEntries: 0, startingToken }))).toBe(status.ABORTED);
    }
    expect(await statusOf(rpc().ListVolumes({ maxEntries: -1, startingToken: '' }))).toBe(
      status.INVALID_ARGUMENT,
    );
  });

  it('gets one volume with its status; an unknown one is NOT_FOUND', async () => {
    await rpc().CreateVolume(createRequest({ capacityRange: range(16 * MiB) }));
    const got = await rpc().ControllerGetVolume({ volumeId: 'pvc-1' });
    expect(got.volume).toMatchObject({ volumeId: 'pvc-1', capacityBytes: 16 * MiB });
    expect(got.status).toEqual({ publishedNodeIds: [] });
    expect(await statusOf(rpc().ControllerGetVolume({ volumeId: 'nope' }))).toBe(status.NOT_FOUND);
    expect(await statusOf(rpc().ControllerGetVolume({ volumeId: '' }))).toBe(status.INVALID_ARGUMENT);
  });
});

describe('GetCapacity', () => {
  const ask = (over: Record<string, unknown> = {}) =>
    rpc().GetCapacity({ volumeCapabilities: [], parameters: {}, accessibleTopology: null, ...over });

  it('counts what the sparse images already promised, so a Create lowers it by the volume size', async () => {
    const before = Number((await ask()).availableCapacity);
    await rpc().CreateVolume(createRequest({ capacityRange: range(8 * 1024 ** 3) }));
    const after = Number((await ask()).availableCapacity);
    // The image takes no blocks (sparse), yet the 8 GiB are promised to it. Other processes on
    // this machine may write meanwhile: the slack is far below the volume's size.
    expect(before - after).toBeGreaterThan(8 * 1024 ** 3 - 256 * MiB);
    expect(before - after).toBeLessThan(8 * 1024 ** 3 + 256 * MiB);
    const res = await ask({ parameters: { fsType: 'ext4' } });
    expect(res.minimumVolumeSize).toEqual({ value: 8 * MiB });
    expect(Number(res.maximumVolumeSize?.value)).toBeLessThanOrEqual(Math.min(1024 ** 4, after));
  });

  it('is 0 for another host or a capability these volumes cannot serve; an unknown option is INVALID_ARGUMENT', async () => {
    expect(await ask({ accessibleTopology: { segments: { [TOPOLOGY_HOST]: 'node-b' } } })).toEqual({
      availableCapacity: 0,
    });
    expect(await ask({ volumeCapabilities: [mountCap('MULTI_NODE_READER_ONLY')] })).toEqual({
      availableCapacity: 0,
    });
    expect(
      Number(
        (await ask({ accessibleTopology: { segments: { [TOPOLOGY_HOST]: TEST_HOST } } })).availableCapacity,
      ),
    ).toBeGreaterThan(0);
    expect(await statusOf(ask({ parameters: { colour: 'x' } }))).toBe(status.INVALID_ARGUMENT);
  });
});
