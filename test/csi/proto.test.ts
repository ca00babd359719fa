import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, describe, expect, it } from 'vitest';
import { type Handlers, loadCsi } from '../../csi/proto/load.js';
import type {
  ControllerMethods,
  CreateVolumeRequest,
  NodePublishVolumeRequest,
} from '../../csi/proto/messages.js';

/**
 * csi/proto/csi.proto against the spec's wire format: field numbers, wire types and enum values,
 * checked on the bytes grpc-js would send (the serializers proto-loader builds), and what a server
 * receives for absent fields. Numbers are the CSI spec's (v1.12).
 */

const csi = loadCsi();

/** The top-level fields of an encoded message: [field number, wire type, payload bytes or varint]. */
function fields(buf: Uint8Array): [number, number, number[] | number][] {
  const out: [number, number, number[] | number][] = [];
  let i = 0;
  const varint = (): number => {
    let value = 0;
    let shift = 0;
    for (;;) {
      const b = buf[i++]!;
      value += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return value;
      shift += 7;
    }
  };
  while (i < buf.length) {
    const key = varint();
    const wire = key & 7;
    if (wire === 0) out.push([key >>> 3, wire, varint()]);
    else if (wire === 2) {
      const len = varint();
      out.push([key >>> 3, wire, [...buf.subarray(i, i + len)]]);
      i += len;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
  return out;
}

const bytes = (s: string) => [...Buffer.from(s)];
const numbers = (buf: Uint8Array) => fields(buf).map(([n]) => n);

describe('csi.proto', () => {
  it('has every RPC of the Identity, Controller and Node services', () => {
    expect(Object.keys(csi.identity).sort()).toEqual(['GetPluginCapabilities', 'GetPluginInfo', 'Probe']);
    expect(Object.keys(csi.controller)).toHaveLength(15);
    expect(Object.keys(csi.node)).toHaveLength(8);
    expect(csi.controller.CreateVolume.path).toBe('/csi.v1.Controller/CreateVolume');
    expect(csi.node.NodePublishVolume.path).toBe('/csi.v1.Node/NodePublishVolume');
    expect(csi.identity.Probe.path).toBe('/csi.v1.Identity/Probe');
  });

  it('CreateVolumeRequest: name 1, capacity_range 2, volume_capabilities 3, parameters 4, secrets 5, accessibility_requirements 7', () => {
    const encode = csi.controller.CreateVolume.requestSerialize;
    expect([...encode({ name: 'n' })]).toEqual([0x0a, 1, ...bytes('n')]);
    expect([...encode({ capacityRange: { requiredBytes: 1 } })]).toEqual([0x12, 2, 0x08, 1]);
    const all = encode({
      name: 'n',
      capacityRange: { requiredBytes: '5', limitBytes: 6 },
      volumeCapabilities: [{ block: {}, accessMode: { mode: 'SINGLE_NODE_MULTI_WRITER' } }],
      parameters: { p: 'q' },
      secrets: { k: 'v' },
      volumeContentSource: { snapshot: { snapshotId: 's' } },
      accessibilityRequirements: { requisite: [{ segments: { zone: 'a' } }] },
      mutableParameters: { m: 'x' },
    });
    const f = fields(all);
    expect(f.map(([n, w]) => [n, w])).toEqual([
      [1, 2],
      [2, 2],
      [3, 2],
      [4, 2],
      [5, 2],
      [6, 2],
      [7, 2],
      [8, 2],
    ]);
    const byNumber = new Map(f.map(([n, , v]) => [n, v as number[]]));
    // CapacityRange: required_bytes 1, limit_bytes 2 (int64 varints).
    expect(byNumber.get(2)).toEqual([0x08, 5, 0x10, 6]);
    // VolumeCapability: block 1 (empty), access_mode 3 {mode 1 = SINGLE_NODE_MULTI_WRITER (7)}.
    expect(byNumber.get(3)).toEqual([0x0a, 0, 0x1a, 2, 0x08, 7]);
    // Map entries: key 1, value 2.
    expect(byNumber.get(5)).toEqual([0x0a, 1, ...bytes('k'), 0x12, 1, ...bytes('v')]);
    // VolumeContentSource: snapshot 1 {snapshot_id 1}.
    expect(byNumber.get(6)).toEqual([0x0a, 3, 0x0a, 1, ...bytes('s')]);
    // TopologyRequirement: requisite 1 {Topology: segments 1 {zone: a}}.
    expect(byNumber.get(7)).toEqual([0x0a, 11, 0x0a, 9, 0x0a, 4, ...bytes('zone'), 0x12, 1, ...bytes('a')]);
  });

  it('NodePublishVolumeRequest: target_path 4, volume_capability 5, readonly 6, secrets 7, volume_context 8', () => {
    const encode = csi.node.NodePublishVolume.requestSerialize;
    expect(
      numbers(
        encode({
          volumeId: 'v',
          publishContext: { a: 'b' },
          stagingTargetPath: '/s',
          targetPath: '/t',
          volumeCapability: { mount: {} },
          readonly: true,
          secrets: { k: 'v' },
          volumeContext: { c: 'd' },
        }),
      ),
    ).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect([...encode({ targetPath: '/t' })]).toEqual([0x22, 2, ...bytes('/t')]);
    expect([...encode({ readonly: true })]).toEqual([0x30, 1]);
    expect([...encode({ secrets: { k: 'v' } })]).toEqual([
      0x3a,
      6,
      0x0a,
      1,
      ...bytes('k'),
      0x12,
      1,
      ...bytes('v'),
    ]);
    expect([...encode({ volumeContext: { k: 'v' } })]).toEqual([
      0x42,
      6,
      0x0a,
      1,
      ...bytes('k'),
      0x12,
      1,
      ...bytes('v'),
    ]);
    // volume_capability 5 -> mount 2 -> MountVolume.volume_mount_group 3.
    expect([...encode({ volumeCapability: { mount: { volumeMountGroup: 'g' } } })]).toEqual([
      0x2a,
      5,
      0x12,
      3,
      0x1a,
      1,
      ...bytes('g'),
    ]);
  });

  it('NodeStageVolumeRequest: staging_target_path 3; Volume: volume_id 2; NodeGetInfoResponse: max_volumes_per_node 2', () => {
    expect([...csi.node.NodeStageVolume.requestSerialize({ stagingTargetPath: '/s' })]).toEqual([
      0x1a,
      2,
      ...bytes('/s'),
    ]);
    expect([...csi.controller.CreateVolume.responseSerialize({ volume: { volumeId: 'v' } })]).toEqual([
      0x0a,
      3,
      0x12,
      1,
      ...bytes('v'),
    ]);
    expect([...csi.node.NodeGetInfo.responseSerialize({ nodeId: 'n', maxVolumesPerNode: 39 })]).toEqual([
      0x0a,
      1,
      ...bytes('n'),
      0x10,
      39,
    ]);
  });

  it('delivers a request as messages.ts types it: defaults for absent scalars, null for absent messages, the oneof named', () => {
    // target_path 4 = '/t', readonly 6 = true, volume_capability 5 = {block {}}.
    const wire = Buffer.from([0x22, 2, ...bytes('/t'), 0x30, 1, 0x2a, 2, 0x0a, 0]);
    const req = csi.node.NodePublishVolume.requestDeserialize(wire) as NodePublishVolumeRequest;
    expect(req).toEqual({
      volumeId: '',
      publishContext: {},
      stagingTargetPath: '',
      targetPath: '/t',
      volumeCapability: { block: {}, accessType: 'block', accessMode: null },
      readonly: true,
      secrets: {},
      volumeContext: {},
    });
    const create = csi.controller.CreateVolume.requestDeserialize(
      Buffer.from([0x12, 2, 0x08, 7]),
    ) as CreateVolumeRequest;
    expect(create.capacityRange).toEqual({ requiredBytes: '7', limitBytes: '0' });
    expect(create.volumeContentSource).toBeNull();
    expect(create.accessibilityRequirements).toBeNull();
  });

  describe('served by grpc-js with typed handlers', () => {
    const dir = mkdtempSync(join(tmpdir(), 'stowage-csi-'));
    const server = new grpc.Server();
    afterAll(() => {
      server.forceShutdown();
      rmSync(dir, { recursive: true, force: true });
    });

    it('answers a CreateVolume over a unix socket', async () => {
      let received: CreateVolumeRequest | undefined;
      const handlers: Partial<Handlers<ControllerMethods>> = {
        CreateVolume: (call, callback) => {
          received = call.request;
          callback(null, { volume: { volumeId: `vol-${call.request.name}`, capacityBytes: 1024 } });
        },
      };
      server.addService(csi.controller, handlers);
      const address = `unix:${join(dir, 'csi.sock')}`;
      await new Promise<void>((resolve, reject) =>
        server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err) =>
          err ? reject(err) : resolve(),
        ),
      );
      const pkg = csi.pkg as { csi: { v1: { Controller: grpc.ServiceClientConstructor } } };
      const client = new pkg.csi.v1.Controller(address, grpc.credentials.createInsecure());
      const reply = await new Promise<unknown>((resolve, reject) =>
        client.CreateVolume!(
          { name: 'a', volumeCapabilities: [{ mount: { fsType: 'ext4' } }] },
          (err: Error | null, res: unknown) => (err ? reject(err) : resolve(res)),
        ),
      );
      client.close();
      expect(received?.volumeCapabilities[0]).toMatchObject({
        accessType: 'mount',
        mount: { fsType: 'ext4', mountFlags: [], volumeMountGroup: '' },
        accessMode: null,
      });
      expect(received?.capacityRange).toBeNull();
      expect(reply).toMatchObject({
        volume: { volumeId: 'vol-a', capacityBytes: '1024', contentSource: null },
      });
    });
  });
});
