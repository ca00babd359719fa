import { access, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CsiClient } from '../csi/client.js';
import { CsiProcess } from './csi-process.js';

/**
 * The local driver's controller as external-provisioner drives it (--node-deployment: one per
 * node), against a real `stowage csi --driver local --mode controller` process on a real socket:
 * real image files on disk, the real store, a restart in the middle. Every call is repeated.
 */
const HOST = 'csi-ctl-node-1';
const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const CAP = { mount: { fsType: 'ext4' }, accessMode: { mode: 'SINGLE_NODE_WRITER' } };

let base: string;
let proc: CsiProcess;
let csi: CsiClient;

const image = (name: string) => join(base, 'data', 'local', `${name}.img`);
const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );
const create = (name: string, extra: Record<string, unknown> = {}) =>
  csi.call('Controller', 'CreateVolume', { name, volumeCapabilities: [CAP], ...extra });
const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => 'OK',
    (e: { code: number }) => e.code,
  );
const available = async () =>
  Number((await csi.call('Controller', 'GetCapacity', { parameters: {} })).availableCapacity);

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'stowage-csi-ctl-local-'));
  const configFile = join(base, 'config.yaml');
  await writeFile(configFile, `hostId: ${HOST}\n`);
  proc = new CsiProcess({
    driver: 'local',
    mode: 'controller',
    socket: join(base, 'csi', 'csi.sock'),
    configFile,
    dataDir: join(base, 'data'),
    logFile: join(base, 'csi.log'),
  });
  csi = await proc.start();
}, 60_000);

afterAll(async () => {
  await proc?.stop();
  if (base) await rm(base, { recursive: true, force: true });
});

describe('stowage csi --driver local --mode controller', () => {
  it('advertises what it serves for local', async () => {
    const caps = await csi.call('Controller', 'ControllerGetCapabilities', {});
    expect((caps.capabilities ?? []).map((c) => c.rpc.type).sort()).toEqual(
      [
        'CREATE_DELETE_VOLUME',
        'GET_CAPACITY',
        'GET_VOLUME',
        'LIST_VOLUMES',
        'SINGLE_NODE_MULTI_WRITER',
      ].sort(),
    );
    expect(
      await codeOf(csi.call('Controller', 'ControllerPublishVolume', { volumeId: 'x', nodeId: HOST })),
    ).toBe(status.UNIMPLEMENTED);
  });

  it('creates an image of the asked size on this host, twice the same; other parameters are ALREADY_EXISTS', async () => {
    const req = { capacityRange: { requiredBytes: 64 * MiB }, parameters: { fsType: 'ext4' } };
    const first = await create('pvc-a', req);
    expect(first.volume).toMatchObject({
      volumeId: 'pvc-a',
      capacityBytes: String(64 * MiB),
      volumeContext: { 'stowage.io/driver': 'local' },
      accessibleTopology: [{ segments: { 'topology.stowage.io/host': HOST } }],
    });
    expect((await stat(image('pvc-a'))).size).toBe(64 * MiB);
    expect(await create('pvc-a', req)).toEqual(first);
    expect(
      await codeOf(create('pvc-a', { ...req, parameters: { fsType: 'ext4', onRemove: 'retain' } })),
    ).toBe(status.ALREADY_EXISTS);
    expect(await codeOf(create('pvc-a', { capacityRange: { requiredBytes: 128 * MiB } }))).toBe(
      status.ALREADY_EXISTS,
    );
    expect((await stat(image('pvc-a'))).size).toBe(64 * MiB);
    expect(await codeOf(create('pvc-z', { parameters: { colour: 'blue' } }))).toBe(status.INVALID_ARGUMENT);
    expect(await codeOf(create('pvc-z', { capacityRange: { limitBytes: MiB } }))).toBe(status.OUT_OF_RANGE);
    expect(await exists(image('pvc-z'))).toBe(false);
  });

  it('GetCapacity drops by the size of a new (sparse) volume', async () => {
    const before = await available();
    await create('pvc-big', { capacityRange: { requiredBytes: 4 * GiB } });
    const after = await available();
    expect((await stat(image('pvc-big'))).blocks).toBeLessThan(64); // sparse: nothing written
    // Other processes share this filesystem: allow them far less than the volume's size.
    expect(before - after).toBeGreaterThan(4 * GiB - 256 * MiB);
    expect(before - after).toBeLessThan(4 * GiB + 256 * MiB);
  });

  it('keeps its volumes across a restart of the plugin', async () => {
    await proc.stop();
    csi = await proc.start();
    const got = await csi.call('Controller', 'ControllerGetVolume', { volumeId: 'pvc-a' });
    expect(got.volume).toMatchObject({ volumeId: 'pvc-a', capacityBytes: String(64 * MiB) });
    expect(got.status).toMatchObject({ publishedNodeIds: [] });
  });

  it('lists 7 more volumes in pages of 3, in name order; a foreign token is ABORTED', async () => {
    for (let i = 1; i <= 7; i++) await create(`page-${i}`, { capacityRange: { requiredBytes: 8 * MiB } });
    const pages: string[][] = [];
    let token = '';
    do {
      const res = await csi.call('Controller', 'ListVolumes', { maxEntries: 3, startingToken: token });
      pages.push((res.entries ?? []).map((e) => e.volume.volumeId));
      token = res.nextToken ?? '';
    } while (token !== '');
    expect(pages).toEqual([
      ['page-1', 'page-2', 'page-3'],
      ['page-4', 'page-5', 'page-6'],
      ['page-7', 'pvc-a', 'pvc-big'],
    ]);
    expect(await codeOf(csi.call('Controller', 'ListVolumes', { startingToken: 'not-a-token' }))).toBe(
      status.ABORTED,
    );
  });

  it('validates capabilities: confirmed for single-node, a message for multi-node, NOT_FOUND for none', async () => {
    const ok = await csi.call('Controller', 'ValidateVolumeCapabilities', {
      volumeId: 'pvc-a',
      volumeCapabilities: [CAP],
    });
    expect(ok.confirmed?.volumeCapabilities).toEqual([
      expect.objectContaining({
        accessMode: { mode: 'SINGLE_NODE_WRITER' },
        mount: expect.objectContaining({ fsType: 'ext4' }),
      }),
    ]);
    const multi = await csi.call('Controller', 'ValidateVolumeCapabilities', {
      volumeId: 'pvc-a',
      volumeCapabilities: [{ mount: {}, accessMode: { mode: 'MULTI_NODE_MULTI_WRITER' } }],
    });
    expect(multi.confirmed).toBeNull();
    expect(multi.message).toContain('MULTI_NODE_MULTI_WRITER');
    expect(
      await codeOf(
        csi.call('Controller', 'ValidateVolumeCapabilities', { volumeId: 'nope', volumeCapabilities: [CAP] }),
      ),
    ).toBe(status.NOT_FOUND);
  });

  it('deletes a volume and its image; twice is OK', async () => {
    expect(await csi.call('Controller', 'DeleteVolume', { volumeId: 'pvc-a' })).toEqual({});
    expect(await exists(image('pvc-a'))).toBe(false);
    expect(await csi.call('Controller', 'DeleteVolume', { volumeId: 'pvc-a' })).toEqual({});
    expect(await codeOf(csi.call('Controller', 'ControllerGetVolume', { volumeId: 'pvc-a' }))).toBe(
      status.NOT_FOUND,
    );
  });
});
