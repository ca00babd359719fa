import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/state/sqlite-store.js';
import type { CsiClient } from '../csi/client.js';
import { FakeEc2 } from '../fakes/aws/ec2-endpoint.js';
import { CsiProcess } from './csi-process.js';

/**
 * The ebs controller as external-provisioner, external-attacher and external-resizer drive it,
 * against a real `stowage csi --driver ebs --mode controller` process and the suite's EC2 endpoint
 * over HTTP with the real AWS SDK. Two nodes are registered hosts in the shared store (as their
 * node plugins would have done); the controller runs on a third machine in another zone.
 */
const ZONE = 'us-east-1b';
const NODE_1 = { id: 'ip-10-0-1-11.ec2.internal', instanceId: 'i-0c5100000000000a1' };
const NODE_2 = { id: 'ip-10-0-1-12.ec2.internal', instanceId: 'i-0c5100000000000a2' };
const CONTROLLER = 'i-0c5100000000000c1';
const GiB = 1024 ** 3;
const CAP = { mount: { fsType: 'ext4' }, accessMode: { mode: 'SINGLE_NODE_WRITER' } };
const ENV = { AWS_ACCESS_KEY_ID: 'AKIDTEST', AWS_SECRET_ACCESS_KEY: 'secret-for-tests-only' };

let base: string;
let ec2: FakeEc2;
let proc: CsiProcess;
let csi: CsiClient;

const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => 'OK',
    (e: { code: number }) => e.code,
  );
const ebsOf = (name: string) => ec2.volumes.filter((v) => v.tags.Name === name && v.state !== 'deleted');
const calls = (action: string) => ec2.calls.filter((c) => c.action === action && !c.error).length;
const topology = (zone: string) => ({ segments: { 'topology.kubernetes.io/zone': zone } });
const create = (name: string, extra: Record<string, unknown> = {}) =>
  csi.call('Controller', 'CreateVolume', {
    name,
    volumeCapabilities: [CAP],
    accessibilityRequirements: { requisite: [topology(ZONE)], preferred: [topology(ZONE)] },
    ...extra,
  });
const publish = (volumeId: string, nodeId: string) =>
  csi.call('Controller', 'ControllerPublishVolume', { volumeId, nodeId, volumeCapability: CAP });
const unpublish = (volumeId: string, nodeId: string) =>
  csi.call('Controller', 'ControllerUnpublishVolume', { volumeId, nodeId });
const published = async (volumeId: string) =>
  (await csi.call('Controller', 'ControllerGetVolume', { volumeId })).status.publishedNodeIds;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'stowage-csi-ctl-ebs-'));
  ec2 = await FakeEc2.start({ stateDelayMs: 30 });
  for (const n of [NODE_1, NODE_2]) {
    ec2.addInstance({
      instanceId: n.instanceId,
      availabilityZone: ZONE,
      privateDnsName: n.id,
      blockDevices: false,
    });
  }
  ec2.addInstance({ instanceId: CONTROLLER, availabilityZone: 'us-east-1a', blockDevices: false });
  ec2.addSnapshot({ snapshotId: 'snap-0c5100000000000f1', sizeGiB: 3 });
  // The nodes' own plugins register them with their instance and zone (here: written directly).
  const state = join(base, 'state.db');
  const store = new SqliteStore(state);
  for (const n of [NODE_1, NODE_2]) {
    await store.upsertHost({
      id: n.id,
      identity: { instanceId: n.instanceId, availabilityZone: ZONE, region: 'us-east-1' },
      lastSeen: new Date().toISOString(),
    });
  }
  await store.close();
  const configFile = join(base, 'config.yaml');
  await writeFile(
    configFile,
    [
      'hostId: csi-controller-1',
      `state: ${state}`,
      'aws:',
      '  region: us-east-1',
      `  instanceId: ${CONTROLLER}`,
      '  availabilityZone: us-east-1a',
      '  maxAttempts: 2',
      'ebs:',
      `  endpoint: ${ec2.url}`,
      '  attachTimeout: 10s',
      '',
    ].join('\n'),
  );
  proc = new CsiProcess({
    driver: 'ebs',
    mode: 'controller',
    socket: join(base, 'csi', 'csi.sock'),
    configFile,
    dataDir: join(base, 'data'),
    logFile: join(base, 'csi.log'),
    env: ENV,
  });
  csi = await proc.start();
}, 60_000);

afterAll(async () => {
  await proc?.stop();
  await ec2?.stop();
  if (base) await rm(base, { recursive: true, force: true });
});

describe('stowage csi --driver ebs --mode controller', () => {
  it('advertises create, publish with published nodes, expansion, listing, snapshots; no capacity', async () => {
    const caps = await csi.call('Controller', 'ControllerGetCapabilities', {});
    expect((caps.capabilities ?? []).map((c) => c.rpc.type).sort()).toEqual(
      [
        'CREATE_DELETE_VOLUME',
        'EXPAND_VOLUME',
        'GET_VOLUME',
        'LIST_VOLUMES',
        'LIST_VOLUMES_PUBLISHED_NODES',
        'PUBLISH_UNPUBLISH_VOLUME',
        'SINGLE_NODE_MULTI_WRITER',
        'CREATE_DELETE_SNAPSHOT',
        'LIST_SNAPSHOTS',
        'GET_SNAPSHOT',
      ].sort(),
    );
    // Mutable parameters are not offered: ControllerModifyVolume answers UNIMPLEMENTED.
    expect(
      await codeOf(
        csi.call('Controller', 'ControllerModifyVolume', { volumeId: 'x', mutableParameters: { a: 'b' } }),
      ),
    ).toBe(status.UNIMPLEMENTED);
  });

  it("creates the EBS volume in the topology's zone with the capacity rounded up to GiB; a repeat makes nothing more", async () => {
    const req = { capacityRange: { requiredBytes: String(1.5 * GiB) }, parameters: { type: 'gp3' } };
    const first = await create('pvc-e1', req);
    expect(first.volume).toMatchObject({
      volumeId: 'pvc-e1',
      capacityBytes: String(2 * GiB),
      accessibleTopology: [topology(ZONE)],
    });
    expect(ebsOf('pvc-e1')).toEqual([expect.objectContaining({ availabilityZone: ZONE, sizeGiB: 2 })]);
    expect(await create('pvc-e1', req)).toEqual(first);
    expect(calls('CreateVolume')).toBe(1);
    expect(await codeOf(create('pvc-e1', { capacityRange: { requiredBytes: String(5 * GiB) } }))).toBe(
      status.ALREADY_EXISTS,
    );
    expect(await codeOf(create('pvc-e9', { capacityRange: { limitBytes: String(GiB / 2) } }))).toBe(
      status.OUT_OF_RANGE,
    );
    expect(ebsOf('pvc-e1')).toEqual([expect.objectContaining({ sizeGiB: 2 })]);
    expect(ebsOf('pvc-e9')).toEqual([]);
  });

  it('creates from a snapshot (its size when no capacity is asked), echoing the source; an unknown snapshot is NOT_FOUND', async () => {
    const source = { snapshot: { snapshotId: 'snap-0c5100000000000f1' } };
    const res = await create('pvc-snap', { volumeContentSource: source });
    expect(res.volume).toMatchObject({ capacityBytes: String(3 * GiB), contentSource: source });
    expect(ebsOf('pvc-snap')).toEqual([expect.objectContaining({ snapshotId: 'snap-0c5100000000000f1' })]);
    for (const snapshotId of ['snap-0c51000000000dead', 'not-a-snapshot']) {
      expect(await codeOf(create('pvc-nosnap', { volumeContentSource: { snapshot: { snapshotId } } }))).toBe(
        status.NOT_FOUND,
      );
    }
    expect(ebsOf('pvc-nosnap')).toEqual([]);
    // A required size below the snapshot's: OUT_OF_RANGE, nothing made.
    const below = { volumeContentSource: source, capacityRange: { requiredBytes: String(2 * GiB) } };
    expect(await codeOf(create('pvc-below', below))).toBe(status.OUT_OF_RANGE);
    expect(ebsOf('pvc-below')).toEqual([]);
    // A limit below the snapshot's size: the volume this call made is undone.
    const small = { volumeContentSource: source, capacityRange: { limitBytes: String(2 * GiB) } };
    expect(await codeOf(create('pvc-small', small))).toBe(status.OUT_OF_RANGE);
    expect(ebsOf('pvc-small').filter((v) => v.state !== 'deleting')).toEqual([]);
    expect(await codeOf(csi.call('Controller', 'ControllerGetVolume', { volumeId: 'pvc-small' }))).toBe(
      status.NOT_FOUND,
    );
  });

  it('publishes to a node: its device; again the same; to a second node FAILED_PRECONDITION naming the first', async () => {
    const first = await publish('pvc-e1', NODE_1.id);
    expect(first.publishContext?.devicePath).toMatch(/^\/dev\/xvd[a-z]+$/);
    expect(await publish('pvc-e1', NODE_1.id)).toEqual(first);
    expect(calls('AttachVolume')).toBe(1);
    const other = await publish('pvc-e1', NODE_2.id).catch((e: { code: number; details: string }) => e);
    expect(other).toMatchObject({ code: status.FAILED_PRECONDITION });
    expect((other as { details: string }).details).toContain(NODE_1.id);
    expect(ebsOf('pvc-e1')[0]?.attachments).toEqual([
      expect.objectContaining({ instanceId: NODE_1.instanceId, state: 'attached' }),
    ]);
    expect(await published('pvc-e1')).toEqual([NODE_1.id]);
    expect(await codeOf(publish('pvc-e1', 'ip-10-9-9-9.ec2.internal'))).toBe(status.NOT_FOUND);
    expect(await codeOf(publish('pvc-none', NODE_1.id))).toBe(status.NOT_FOUND);
  });

  it('answers the same after a restart of the controller, from the store', async () => {
    const before = await publish('pvc-e1', NODE_1.id);
    await proc.stop();
    csi = await proc.start();
    expect(await publish('pvc-e1', NODE_1.id)).toEqual(before);
    expect(calls('AttachVolume')).toBe(1);
  });

  it('unpublishes (twice, and from a node it never had): detached in EC2', async () => {
    expect(await unpublish('pvc-e1', NODE_1.id)).toEqual({});
    expect(ebsOf('pvc-e1')[0]?.attachments).toEqual([]);
    expect(await unpublish('pvc-e1', NODE_1.id)).toEqual({});
    expect(await unpublish('pvc-e1', NODE_2.id)).toEqual({});
    expect(await unpublish('pvc-e1', 'never-a-node')).toEqual({});
    expect(calls('DetachVolume')).toBe(1);
    expect(await published('pvc-e1')).toEqual([]);
  });

  it('expands to the required bytes rounded up to GiB; a limit below that is OUT_OF_RANGE', async () => {
    const expand = (requiredBytes: number, limitBytes = 0) =>
      csi.call('Controller', 'ControllerExpandVolume', {
        volumeId: 'pvc-e1',
        capacityRange: { requiredBytes: String(requiredBytes), limitBytes: String(limitBytes) },
      });
    expect(await codeOf(expand(3 * GiB + 1, 3 * GiB + 2))).toBe(status.OUT_OF_RANGE);
    expect(await expand(3 * GiB + 1)).toEqual({
      capacityBytes: String(4 * GiB),
      nodeExpansionRequired: true,
    });
    expect(ebsOf('pvc-e1')[0]?.sizeGiB).toBe(4);
    expect(await expand(3 * GiB + 1)).toEqual({
      capacityBytes: String(4 * GiB),
      nodeExpansionRequired: true,
    });
    expect(calls('ModifyVolume')).toBe(1);
  });

  it('a throttled EC2 is UNAVAILABLE and changes nothing; the retry goes through', async () => {
    ec2.failNext('CreateVolume', { code: 'RequestLimitExceeded', times: 2 });
    expect(await codeOf(create('pvc-t'))).toBe(status.UNAVAILABLE);
    expect(ebsOf('pvc-t')).toEqual([]);
    expect(await codeOf(csi.call('Controller', 'ControllerGetVolume', { volumeId: 'pvc-t' }))).toBe(
      status.NOT_FOUND,
    );
    await create('pvc-t');
    expect(ebsOf('pvc-t')).toHaveLength(1);

    ec2.failNext('AttachVolume', { code: 'RequestLimitExceeded', times: 2 });
    expect(await codeOf(publish('pvc-t', NODE_2.id))).toBe(status.UNAVAILABLE);
    expect(ebsOf('pvc-t')[0]?.attachments).toEqual([]);
    expect(await published('pvc-t')).toEqual([]);
    await publish('pvc-t', NODE_2.id);
    expect(await published('pvc-t')).toEqual([NODE_2.id]);
    expect(await unpublish('pvc-t', '')).toEqual({}); // every node
    expect(ebsOf('pvc-t')[0]?.attachments).toEqual([]);
  });

  it('deletes the volumes in EC2; twice is OK', async () => {
    for (const name of ['pvc-e1', 'pvc-snap', 'pvc-t']) {
      expect(await csi.call('Controller', 'DeleteVolume', { volumeId: name })).toEqual({});
      expect(await csi.call('Controller', 'DeleteVolume', { volumeId: name })).toEqual({});
      expect(ebsOf(name).filter((v) => v.state !== 'deleting')).toEqual([]);
    }
    const listed = await csi.call('Controller', 'ListVolumes', {});
    expect(listed.entries).toEqual([]);
  });
});
