import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TEST_HOST } from '../helpers/runtime.js';
import { mountCap, statusOf } from './node-harness.js';
import { GiB, type SanityDriver, type SanityPlugin, startSanityPlugin } from './sanity-harness.js';

/**
 * csi-sanity's cases (kubernetes-csi/csi-test, pkg/sanity: identity.go, controller.go, node.go),
 * reproduced one `it` per case under csi-sanity's own names, since the tool itself cannot be built
 * here. Each drives the plugin over gRPC as csi-sanity does, against the real composition of the
 * door (`--mode all`) for `local`, and for `disk` (ebs's traits over a fake cloud disk) where
 * csi-sanity runs the case only for a plugin that advertises PUBLISH_UNPUBLISH_VOLUME or
 * EXPAND_VOLUME. csi-sanity's configuration here: TestVolumeSize 1 GiB, IdempotentCount 3,
 * --csi.mountdir <kubelet>/csi-mount, --csi.stagingdir <kubelet>/csi-staging (stowage serves only
 * paths inside kubelet's directory). Where stowage answers otherwise than csi-sanity expects, the
 * test's name says "stowage differs" and its comment says why.
 */

const TEST_VOLUME_SIZE = GiB;
const IDEMPOTENT_COUNT = 3;
/** csi-sanity's MaxNameLength: the longest name a CO may send (CreateVolume, CreateSnapshot). */
const MAX_NAME_LENGTH = 128;

let p: SanityPlugin;
let seq = 0;

/** Starts the plugin for `driver` around every test of the enclosing describe. */
function servePlugin(driver: SanityDriver) {
  beforeEach(async () => {
    p = await startSanityPlugin(driver);
  });
  afterEach(async () => {
    await p.close();
  });
}

/** csi-sanity's UniqueString: the prefix with a suffix no other test uses. */
const unique = (prefix: string) => `${prefix}-${++seq}`;

const call = (
  service: 'Identity' | 'Controller' | 'Node',
  method: string,
  req: Record<string, unknown> = {},
) => p.client.call(service as 'Node', method as never, req as never);
const controller = (method: string, req: Record<string, unknown> = {}) => call('Controller', method, req);
const node = (method: string, req: Record<string, unknown> = {}) => call('Node', method, req);

const snw = () => mountCap('SINGLE_NODE_WRITER');
const range = (required: number, limit = 0) => ({
  requiredBytes: String(required),
  limitBytes: String(limit),
});
const targetPath = () => join(p.kubelet, 'csi-mount', 'target');
const stagingPath = () => join(p.kubelet, 'csi-staging');

function createVolume(name: string, over: Record<string, unknown> = {}) {
  return controller('CreateVolume', { name, volumeCapabilities: [snw()], ...over });
}

async function rpcCapabilities(service: 'Controller' | 'Node'): Promise<string[]> {
  const res = await call(
    service,
    service === 'Controller' ? 'ControllerGetCapabilities' : 'NodeGetCapabilities',
  );
  return (res.capabilities as { rpc: { type: string } }[]).map((c) => c.rpc.type);
}

async function volumeIds(req: Record<string, unknown> = {}): Promise<string[]> {
  const res = await controller('ListVolumes', req);
  return (res.entries as { volume: { volumeId: string } }[]).map((e) => e.volume.volumeId);
}

describe('Identity Service', () => {
  servePlugin('local');

  it('GetPluginCapabilities should return appropriate capabilities', async () => {
    const res = await call('Identity', 'GetPluginCapabilities');
    for (const cap of res.capabilities as Record<string, { type: string } | undefined>[]) {
      if (cap.service)
        expect(['CONTROLLER_SERVICE', 'VOLUME_ACCESSIBILITY_CONSTRAINTS']).toContain(cap.service.type);
      else expect(['ONLINE', 'OFFLINE']).toContain(cap.volumeExpansion?.type);
    }
    expect(res.capabilities.length).toBeGreaterThan(0);
  });

  it('Probe should return appropriate information', async () => {
    const res = await call('Identity', 'Probe');
    // csi-sanity accepts OK (or FAILED_PRECONDITION) and, when `ready` is set, either value.
    expect(res.ready).toEqual({ value: true });
  });

  it('GetPluginInfo should return appropriate information', async () => {
    const res = await call('Identity', 'GetPluginInfo');
    expect(res.name.length).toBeGreaterThan(0);
    expect(res.name.length).toBeLessThanOrEqual(63);
    expect(res.name).toMatch(/^[a-zA-Z][A-Za-z0-9-._]{0,61}[a-zA-Z]$/);
  });
});

describe('Controller Service [Controller Server]', () => {
  describe('with local', () => {
    servePlugin('local');

    it('ControllerGetCapabilities should return appropriate capabilities', async () => {
      const known = [
        'CREATE_DELETE_VOLUME',
        'PUBLISH_UNPUBLISH_VOLUME',
        'LIST_VOLUMES',
        'GET_CAPACITY',
        'CREATE_DELETE_SNAPSHOT',
        'LIST_SNAPSHOTS',
        'PUBLISH_READONLY',
        'CLONE_VOLUME',
        'EXPAND_VOLUME',
        'LIST_VOLUMES_PUBLISHED_NODES',
        'GET_VOLUME',
        'VOLUME_CONDITION',
        'SINGLE_NODE_MULTI_WRITER',
        'MODIFY_VOLUME',
      ];
      const caps = await rpcCapabilities('Controller');
      expect(caps.length).toBeGreaterThan(0);
      for (const cap of caps) expect(known).toContain(cap);
    });

    it('GetCapacity should return capacity (no optional values added)', async () => {
      expect(await rpcCapabilities('Controller')).toContain('GET_CAPACITY');
      const res = await controller('GetCapacity', {});
      expect(Number(res.availableCapacity)).toBeGreaterThanOrEqual(0);
    });

    it('ListVolumes should return appropriate values (no optional values added)', async () => {
      await createVolume(unique('sanity-list'));
      const res = await controller('ListVolumes', {});
      expect(res.entries).toHaveLength(1);
      for (const e of res.entries as { volume: { volumeId: string } }[])
        expect(e.volume.volumeId).not.toBe('');
    });

    it('ListVolumes should fail when an invalid starting_token is passed', async () => {
      expect(await statusOf(controller('ListVolumes', { startingToken: 'invalid-token' }))).toBe('ABORTED');
    });

    it('ListVolumes check the presence of new volumes and absence of deleted ones in the volume list', async () => {
      const before = (await volumeIds()).length;
      const vol = await createVolume('sanity');
      expect(await volumeIds()).toHaveLength(before + 1);
      await controller('DeleteVolume', { volumeId: vol.volume.volumeId });
      expect(await volumeIds()).toHaveLength(before);
    });

    // In csi-sanity releases before v4 (removed since): pages of max_entries, then the rest.
    it('ListVolumes should return next token when a limited number of entries are requested', async () => {
      for (let i = 0; i < 5; i++) await createVolume(unique('sanity-page'));
      const first = await controller('ListVolumes', { maxEntries: 2 });
      expect(first.entries).toHaveLength(2);
      expect(first.nextToken).not.toBe('');
      const rest = await controller('ListVolumes', { startingToken: first.nextToken });
      expect(rest.entries).toHaveLength(3);
      expect(rest.nextToken).toBe('');
    });

    // csi-sanity keeps this case disabled (XIt: fragile for index-based tokens); stowage's tokens
    // name the last volume of a page, so it is run here as csi-sanity defines it.
    it('ListVolumes pagination should detect volumes added between pages and accept tokens when the last volume from a page is deleted', async () => {
      const minVolCount = 3;
      const maxEntries = 2;
      const existing = new Map<string, boolean>();
      for (let i = 0; i < minVolCount; i++)
        existing.set((await createVolume(`sanity${i}`)).volume.volumeId, true);
      const page = await controller('ListVolumes', { maxEntries });
      expect(page.entries).toHaveLength(maxEntries);
      for (const e of page.entries as { volume: { volumeId: string } }[]) {
        expect(existing.get(e.volume.volumeId)).toBe(true);
        await controller('DeleteVolume', { volumeId: e.volume.volumeId });
        existing.set(e.volume.volumeId, false);
      }
      existing.set((await createVolume('new-addition')).volume.volumeId, true);
      const rest = await volumeIds({ startingToken: page.nextToken });
      // A volume may be missed (new-addition sorts before the token), none listed twice or deleted.
      expect(rest.length).toBeLessThanOrEqual(minVolCount - maxEntries + 1);
      for (const id of rest) {
        expect(existing.get(id)).toBe(true);
        existing.set(id, false);
      }
      expect(rest).toEqual(['sanity2']);
    });

    it('CreateVolume should fail when no name is provided', async () => {
      expect(await statusOf(controller('CreateVolume', {}))).toBe('INVALID_ARGUMENT');
      expect(await volumeIds()).toEqual([]);
    });

    it('CreateVolume should fail when no volume capabilities are provided', async () => {
      const name = unique('sanity-controller-create-no-volume-capabilities');
      expect(await statusOf(controller('CreateVolume', { name }))).toBe('INVALID_ARGUMENT');
      expect(await volumeIds()).toEqual([]);
    });

    it('CreateVolume should return appropriate values SingleNodeWriter NoCapacity', async () => {
      // csi-sanity's case sends required_bytes despite its name.
      const res = await createVolume(unique('sanity-controller-create-single-no-capacity'), {
        capacityRange: range(TEST_VOLUME_SIZE),
      });
      expect(res.volume.volumeId).not.toBe('');
    });

    it('CreateVolume should return appropriate values SingleNodeWriter WithCapacity 1Gi', async () => {
      const res = await createVolume(unique('sanity-controller-create-single-with-capacity'), {
        capacityRange: range(TEST_VOLUME_SIZE),
      });
      expect(res.volume.volumeId).not.toBe('');
      expect(Number(res.volume.capacityBytes)).toBeGreaterThanOrEqual(TEST_VOLUME_SIZE);
    });

    it('CreateVolume should not fail when requesting to create a volume with already existing name and same capacity', async () => {
      const name = unique('sanity-controller-create-twice');
      const vol1 = await createVolume(name, { capacityRange: range(TEST_VOLUME_SIZE) });
      const vol2 = await createVolume(name, { capacityRange: range(TEST_VOLUME_SIZE) });
      expect(Number(vol1.volume.capacityBytes)).toBeGreaterThanOrEqual(TEST_VOLUME_SIZE);
      expect(Number(vol2.volume.capacityBytes)).toBeGreaterThanOrEqual(TEST_VOLUME_SIZE);
      expect(vol2.volume.volumeId).toBe(vol1.volume.volumeId);
    });

    it('CreateVolume should fail when requesting to create a volume with already existing name and different capacity', async () => {
      const name = unique('sanity-controller-create-twice-different');
      const vol = await createVolume(name, { capacityRange: range(TEST_VOLUME_SIZE, TEST_VOLUME_SIZE) });
      const before = (await p.t.manager.get('local', vol.volume.volumeId)).volume;
      const again = createVolume(name, { capacityRange: range(2 * TEST_VOLUME_SIZE, 2 * TEST_VOLUME_SIZE) });
      expect(await statusOf(again)).toBe('ALREADY_EXISTS');
      // Nothing changed: the volume as it was, and no other.
      expect((await p.t.manager.get('local', vol.volume.volumeId)).volume).toEqual(before);
      expect(await volumeIds()).toEqual([vol.volume.volumeId]);
    });

    it('CreateVolume should not fail when creating volume with maximum-length name', async () => {
      const prefix = unique('sanity-controller-create-maxlen');
      const name = `${prefix}-`.padEnd(MAX_NAME_LENGTH, 'x');
      expect(name).toHaveLength(MAX_NAME_LENGTH);
      const res = await createVolume(name, { capacityRange: range(TEST_VOLUME_SIZE) });
      expect(Number(res.volume.capacityBytes)).toBeGreaterThanOrEqual(TEST_VOLUME_SIZE);
      // The same name again is the same volume (its id derived from the name, not stored by it).
      expect((await createVolume(name, { capacityRange: range(TEST_VOLUME_SIZE) })).volume.volumeId).toBe(
        res.volume.volumeId,
      );
    });

    it('DeleteVolume should fail when no volume id is provided', async () => {
      expect(await statusOf(controller('DeleteVolume', {}))).toBe('INVALID_ARGUMENT');
    });

    it('DeleteVolume should succeed when an invalid volume id is used', async () => {
      // csi-sanity's default IDGen makes "fake-volume-id"; an id that is no valid name at all too.
      await controller('DeleteVolume', { volumeId: 'fake-volume-id' });
      await controller('DeleteVolume', { volumeId: 'not a/valid name!' });
    });

    it('DeleteVolume should return appropriate values (no optional values added)', async () => {
      const vol = await createVolume(unique('sanity-controller-create-appropriate'), {
        capacityRange: range(TEST_VOLUME_SIZE),
      });
      await controller('DeleteVolume', { volumeId: vol.volume.volumeId });
      expect(await volumeIds()).toEqual([]);
    });

    it('ValidateVolumeCapabilities should fail when no volume id is provided', async () => {
      expect(await statusOf(controller('ValidateVolumeCapabilities', {}))).toBe('INVALID_ARGUMENT');
    });

    it('ValidateVolumeCapabilities should fail when no volume capabilities are provided', async () => {
      const vol = await createVolume(unique('sanity-controller-validate-nocaps'), {
        capacityRange: range(TEST_VOLUME_SIZE),
      });
      const res = controller('ValidateVolumeCapabilities', { volumeId: vol.volume.volumeId });
      expect(await statusOf(res)).toBe('INVALID_ARGUMENT');
    });

    it('ValidateVolumeCapabilities should return appropriate values (no optional values added)', async () => {
      const vol = await createVolume(unique('sanity-controller-validate'), {
        capacityRange: range(TEST_VOLUME_SIZE),
      });
      const res = await controller('ValidateVolumeCapabilities', {
        volumeId: vol.volume.volumeId,
        volumeCapabilities: [snw()],
      });
      // Confirmed, with the capabilities (the spec requires them when confirmed is set).
      expect(res.confirmed?.volumeCapabilities?.length).toBeGreaterThan(0);
    });

    it('ValidateVolumeCapabilities should fail when the requested volume does not exist', async () => {
      const res = controller('ValidateVolumeCapabilities', {
        volumeId: 'fake-volume-id',
        volumeCapabilities: [snw()],
      });
      expect(await statusOf(res)).toBe('NOT_FOUND');
    });

    // csi-sanity skips ControllerPublishVolume, "volume lifecycle" and ControllerUnpublishVolume for
    // a plugin without PUBLISH_UNPUBLISH_VOLUME: local's volumes need no attaching.
    it('ControllerPublishVolume is skipped by csi-sanity for local: PUBLISH_UNPUBLISH_VOLUME is not advertised', async () => {
      expect(await rpcCapabilities('Controller')).not.toContain('PUBLISH_UNPUBLISH_VOLUME');
      const res = controller('ControllerPublishVolume', {
        volumeId: 'x',
        nodeId: TEST_HOST,
        volumeCapability: snw(),
      });
      expect(await statusOf(res)).toBe('UNIMPLEMENTED');
    });
  });

  describe('with an attachable disk (ebs traits)', () => {
    servePlugin('disk');

    const publishReq = (over: Record<string, unknown> = {}) => ({
      volumeId: 'fake-volume-id',
      nodeId: 'fake-node-id',
      volumeCapability: snw(),
      readonly: false,
      ...over,
    });

    it('ControllerGetCapabilities advertises PUBLISH_UNPUBLISH_VOLUME, so csi-sanity runs the publish cases', async () => {
      const caps = await rpcCapabilities('Controller');
      expect(caps).toContain('PUBLISH_UNPUBLISH_VOLUME');
      // Nor PUBLISH_READONLY: csi-sanity skips "should fail when the volume is already published
      // but is incompatible" (read-only is applied at NodePublish, not at attach).
      expect(caps).not.toContain('PUBLISH_READONLY');
    });

    it('ControllerPublishVolume should fail when no volume id is provided', async () => {
      expect(await statusOf(controller('ControllerPublishVolume', {}))).toBe('INVALID_ARGUMENT');
    });

    it('ControllerPublishVolume should fail when no node id is provided', async () => {
      const res = controller('ControllerPublishVolume', { volumeId: 'fake-volume-id' });
      expect(await statusOf(res)).toBe('INVALID_ARGUMENT');
    });

    it('ControllerPublishVolume should fail when no volume capability is provided', async () => {
      const res = controller('ControllerPublishVolume', {
        volumeId: 'fake-volume-id',
        nodeId: 'fake-node-id',
      });
      expect(await statusOf(res)).toBe('INVALID_ARGUMENT');
    });

    it('ControllerPublishVolume should fail when the volume does not exist', async () => {
      expect(await statusOf(controller('ControllerPublishVolume', publishReq()))).toBe('NOT_FOUND');
    });

    it('ControllerPublishVolume should fail when the node does not exist', async () => {
      const vol = await createVolume(unique('sanity-controller-wrong-node'));
      const res = controller('ControllerPublishVolume', publishReq({ volumeId: vol.volume.volumeId }));
      expect(await statusOf(res)).toBe('NOT_FOUND');
      expect(p.disk!.attached.size).toBe(0);
    });

    async function volumeLifecycle(count: number) {
      const ni = await node('NodeGetInfo');
      expect(ni.nodeId).not.toBe('');
      const vol = await createVolume(unique(`sanity-controller-publish-${count}`), {
        accessibilityRequirements: { requisite: [ni.accessibleTopology] },
      });
      const id = vol.volume.volumeId;
      for (let i = 0; i < count; i++) {
        const res = await controller('ControllerPublishVolume', {
          volumeId: id,
          nodeId: ni.nodeId,
          volumeCapability: snw(),
          volumeContext: vol.volume.volumeContext,
          readonly: false,
        });
        expect(res).toBeDefined();
        expect(p.disk!.attached.get(id)).toBe(TEST_HOST);
      }
      for (let i = 0; i < count; i++) {
        await controller('ControllerUnpublishVolume', { volumeId: id, nodeId: ni.nodeId });
        expect(p.disk!.attached.has(id)).toBe(false);
      }
      await controller('DeleteVolume', { volumeId: id });
      expect(await volumeIds()).toEqual([]);
    }

    it('volume lifecycle should work', async () => {
      await volumeLifecycle(1);
    });

    it('volume lifecycle should be idempotent', async () => {
      await volumeLifecycle(IDEMPOTENT_COUNT);
    });

    it('ControllerUnpublishVolume should fail when no volume id is provided', async () => {
      expect(await statusOf(controller('ControllerUnpublishVolume', {}))).toBe('INVALID_ARGUMENT');
    });
  });
});

describe('Node Service', () => {
  describe('with local', () => {
    servePlugin('local');

    it('NodeGetCapabilities should return appropriate capabilities', async () => {
      const known = [
        'UNKNOWN',
        'STAGE_UNSTAGE_VOLUME',
        'GET_VOLUME_STATS',
        'EXPAND_VOLUME',
        'VOLUME_CONDITION',
        'SINGLE_NODE_MULTI_WRITER',
        'VOLUME_MOUNT_GROUP',
      ];
      const caps = await rpcCapabilities('Node');
      expect(caps).toContain('STAGE_UNSTAGE_VOLUME');
      for (const cap of caps) expect(known).toContain(cap);
    });

    it('NodeGetInfo should return appropriate values', async () => {
      const ni = await node('NodeGetInfo');
      expect(ni.nodeId).toBe(TEST_HOST);
      expect(Number(ni.maxVolumesPerNode)).toBeGreaterThanOrEqual(0);
      // VOLUME_ACCESSIBILITY_CONSTRAINTS is advertised, so the topology must be there.
      expect(ni.accessibleTopology?.segments).toEqual({ 'topology.stowage.io/host': TEST_HOST });
    });

    it('NodePublishVolume should fail when no volume id is provided', async () => {
      expect(await statusOf(node('NodePublishVolume', {}))).toBe('INVALID_ARGUMENT');
    });

    it('NodePublishVolume should fail when no target path is provided', async () => {
      expect(await statusOf(node('NodePublishVolume', { volumeId: 'fake-volume-id' }))).toBe(
        'INVALID_ARGUMENT',
      );
    });

    it('NodePublishVolume should fail when no volume capability is provided', async () => {
      const res = node('NodePublishVolume', { volumeId: 'fake-volume-id', targetPath: targetPath() });
      expect(await statusOf(res)).toBe('INVALID_ARGUMENT');
      expect(existsSync(targetPath())).toBe(false);
    });

    it('NodeUnpublishVolume should fail when no volume id is provided', async () => {
      expect(await statusOf(node('NodeUnpublishVolume', {}))).toBe('INVALID_ARGUMENT');
    });

    it('NodeUnpublishVolume should fail when no target path is provided', async () => {
      expect(await statusOf(node('NodeUnpublishVolume', { volumeId: 'fake-volume-id' }))).toBe(
        'INVALID_ARGUMENT',
      );
    });

    it('NodeUnpublishVolume should remove target path', async () => {
      const vol = await createVolume(unique('sanity-node-unpublish-volume'), {
        capacityRange: range(TEST_VOLUME_SIZE),
      });
      const id = vol.volume.volumeId;
      await node('NodeStageVolume', {
        volumeId: id,
        stagingTargetPath: stagingPath(),
        volumeCapability: snw(),
      });
      await node('NodePublishVolume', {
        volumeId: id,
        stagingTargetPath: stagingPath(),
        targetPath: targetPath(),
        volumeCapability: snw(),
      });
      expect(existsSync(targetPath())).toBe(true);
      await node('NodeUnpublishVolume', { volumeId: id, targetPath: targetPath() });
      expect(existsSync(targetPath())).toBe(false);
    });

    // csi-sanity's own NodeUnpublishVolume cases never name an unknown volume; stowage answers
    // OK there (the spec's "already unpublished"), see docs/csi.md "Idempotency and error codes".
    it('NodeUnpublishVolume of a volume that is not published answers OK (stowage: already unpublished is success)', async () => {
      await node('NodeUnpublishVolume', { volumeId: 'fake-volume-id', targetPath: targetPath() });
    });

    it('NodeStageVolume should fail when no volume id is provided', async () => {
      const res = node('NodeStageVolume', {
        stagingTargetPath: stagingPath(),
        volumeCapability: snw(),
        publishContext: { device: '/dev/mock' },
      });
      expect(await statusOf(res)).toBe('INVALID_ARGUMENT');
    });

    it('NodeStageVolume should fail when no staging target path is provided', async () => {
      const res = node('NodeStageVolume', {
        volumeId: 'fake-volume-id',
        volumeCapability: snw(),
        publishContext: { device: '/dev/mock' },
      });
      expect(await statusOf(res)).toBe('INVALID_ARGUMENT');
    });

    it('NodeStageVolume should fail when no volume capability is provided', async () => {
      const vol = await createVolume(unique('sanity-node-stage-nocaps'));
      const res = node('NodeStageVolume', {
        volumeId: vol.volume.volumeId,
        stagingTargetPath: stagingPath(),
        publishContext: { device: '/dev/mock' },
      });
      expect(await statusOf(res)).toBe('INVALID_ARGUMENT');
      expect(p.t.mounter.table.size).toBe(0);
    });

    it('NodeUnstageVolume should fail when no volume id is provided', async () => {
      const res = node('NodeUnstageVolume', { stagingTargetPath: stagingPath() });
      expect(await statusOf(res)).toBe('INVALID_ARGUMENT');
    });

    it('NodeUnstageVolume should fail when no staging target path is provided', async () => {
      expect(await statusOf(node('NodeUnstageVolume', { volumeId: 'fake-volume-id' }))).toBe(
        'INVALID_ARGUMENT',
      );
    });

    it('NodeGetVolumeStats should fail when no volume id is provided', async () => {
      expect(await statusOf(node('NodeGetVolumeStats', { volumePath: 'some/path' }))).toBe(
        'INVALID_ARGUMENT',
      );
    });

    it('NodeGetVolumeStats should fail when no volume path is provided', async () => {
      expect(await statusOf(node('NodeGetVolumeStats', { volumeId: 'fake-volume-id' }))).toBe(
        'INVALID_ARGUMENT',
      );
    });

    it('NodeGetVolumeStats should fail when volume is not found', async () => {
      const res = node('NodeGetVolumeStats', { volumeId: 'fake-volume-id', volumePath: 'some/path' });
      expect(await statusOf(res)).toBe('NOT_FOUND');
      // Also for a path inside kubelet's directory, where the lookup reaches the store.
      const inside = node('NodeGetVolumeStats', { volumeId: 'fake-volume-id', volumePath: targetPath() });
      expect(await statusOf(inside)).toBe('NOT_FOUND');
    });

    it('NodeGetVolumeStats should fail when volume does not exist on the specified path', async () => {
      const vol = await createVolume(unique('sanity-node-get-volume-stats'), {
        capacityRange: range(TEST_VOLUME_SIZE),
      });
      const id = vol.volume.volumeId;
      await node('NodeStageVolume', {
        volumeId: id,
        stagingTargetPath: stagingPath(),
        volumeCapability: snw(),
      });
      await node('NodePublishVolume', {
        volumeId: id,
        stagingTargetPath: stagingPath(),
        targetPath: targetPath(),
        volumeCapability: snw(),
      });
      const res = node('NodeGetVolumeStats', { volumeId: id, volumePath: 'some/path' });
      expect(await statusOf(res)).toBe('NOT_FOUND');
    });

    it('NodeExpandVolume is skipped by csi-sanity for local: EXPAND_VOLUME is not advertised', async () => {
      expect(await rpcCapabilities('Node')).not.toContain('EXPAND_VOLUME');
    });
  });

  describe('with an attachable disk (ebs traits)', () => {
    servePlugin('disk');

    it('NodeExpandVolume should fail when no volume id is provided', async () => {
      const res = node('NodeExpandVolume', {
        volumePath: join(p.kubelet, 'csi-mount'),
        volumeCapability: snw(),
      });
      expect(await statusOf(res)).toBe('INVALID_ARGUMENT');
    });

    it('NodeExpandVolume should fail when no volume path is provided', async () => {
      const vol = await createVolume(unique('sanity-node-expand-volume-valid-id'), {
        capacityRange: range(TEST_VOLUME_SIZE),
      });
      const res = node('NodeExpandVolume', { volumeId: vol.volume.volumeId, volumeCapability: snw() });
      expect(await statusOf(res)).toBe('INVALID_ARGUMENT');
    });

    it('NodeExpandVolume should work if node-expand is called after node-publish', async () => {
      const expandSize = TEST_VOLUME_SIZE + GiB;
      const vol = await createVolume(unique('sanity-node-expand-volume'), {
        capacityRange: range(TEST_VOLUME_SIZE),
      });
      const id = vol.volume.volumeId;
      const grown = await controller('ControllerExpandVolume', {
        volumeId: id,
        capacityRange: range(expandSize),
        volumeCapability: snw(),
      });
      expect(Number(grown.capacityBytes)).toBe(expandSize);
      const ni = await node('NodeGetInfo');
      const pub = await controller('ControllerPublishVolume', {
        volumeId: id,
        nodeId: ni.nodeId,
        volumeCapability: snw(),
      });
      const common = { volumeId: id, volumeCapability: snw(), publishContext: pub.publishContext };
      await node('NodeStageVolume', { ...common, stagingTargetPath: stagingPath() });
      await node('NodePublishVolume', {
        ...common,
        stagingTargetPath: stagingPath(),
        targetPath: targetPath(),
      });
      await node('NodeExpandVolume', {
        volumeId: id,
        volumePath: targetPath(),
        capacityRange: range(expandSize),
      });
      expect(p.t.mounter.filesystemOf('/dev/xvdba')).toBe('ext4');
      expect(p.disk!.fsBytes(id)).toBe(expandSize);
    });

    it('NodeExpandVolume should fail when volume is not found', async () => {
      const res = node('NodeExpandVolume', { volumeId: 'fake-volume-id', volumePath: 'some/path' });
      expect(await statusOf(res)).toBe('NOT_FOUND');
    });
  });

  /**
   * csi-sanity's runControllerTest, then the teardown its Resources.Cleanup does: NodeGetInfo,
   * create (in the node's topology), controller publish where advertised, stage, publish (`count`
   * times each), stats at the target; then unpublish, unstage, controller unpublish, delete.
   */
  async function runControllerTest(count: number) {
    const ni = await node('NodeGetInfo');
    expect(ni.nodeId).not.toBe('');
    const publishes = (await rpcCapabilities('Controller')).includes('PUBLISH_UNPUBLISH_VOLUME');
    const nodeCaps = await rpcCapabilities('Node');
    expect(nodeCaps).toContain('STAGE_UNSTAGE_VOLUME');
    expect(nodeCaps).toContain('GET_VOLUME_STATS');
    const vol = await createVolume(unique(`sanity-node-full-${count}`), {
      capacityRange: range(TEST_VOLUME_SIZE),
      accessibilityRequirements: { requisite: [ni.accessibleTopology] },
    });
    const id = vol.volume.volumeId;
    let publishContext: Record<string, string> = {};
    if (publishes) {
      const res = await controller('ControllerPublishVolume', {
        volumeId: id,
        nodeId: ni.nodeId,
        volumeCapability: snw(),
        volumeContext: vol.volume.volumeContext,
        readonly: false,
      });
      publishContext = res.publishContext;
    }
    const common = {
      volumeId: id,
      volumeCapability: snw(),
      volumeContext: vol.volume.volumeContext,
      publishContext,
    };
    for (let i = 0; i < count; i++)
      await node('NodeStageVolume', { ...common, stagingTargetPath: stagingPath() });
    for (let i = 0; i < count; i++) {
      await node('NodePublishVolume', {
        ...common,
        stagingTargetPath: stagingPath(),
        targetPath: targetPath(),
      });
    }
    const stats = await node('NodeGetVolumeStats', { volumeId: id, volumePath: targetPath() });
    expect(stats.usage.length).toBeGreaterThan(0);
    expect(stats.volumeCondition).toEqual({ abnormal: false, message: expect.any(String) });
    const mounts = await p.t.store.getMounts(id);
    expect(Object.keys(mounts.find((m) => m.host === TEST_HOST)?.refs ?? {})).toHaveLength(2);

    await node('NodeUnpublishVolume', { volumeId: id, targetPath: targetPath() });
    await node('NodeUnstageVolume', { volumeId: id, stagingTargetPath: stagingPath() });
    if (publishes) await controller('ControllerUnpublishVolume', { volumeId: id, nodeId: ni.nodeId });
    await controller('DeleteVolume', { volumeId: id });
    expect(p.t.mounter.table.size).toBe(0);
    expect(existsSync(targetPath())).toBe(false);
    expect(await volumeIds()).not.toContain(id);
  }

  describe('with local (no controller publish)', () => {
    servePlugin('local');
    it('should work', async () => {
      await runControllerTest(1);
    });
    it('should be idempotent', async () => {
      await runControllerTest(IDEMPOTENT_COUNT);
    });

    // csi-sanity runs every case against one plugin, so its cases reuse one staging and one target
    // path, and its Resources.Cleanup unpublishes and unstages every volume it made at those paths
    // (failing on any error but NOT_FOUND), whether or not that volume was ever staged.
    it("should work, then be idempotent, on the same plugin and paths; with csi-sanity's cleanup of a volume never staged", async () => {
      const never = (await createVolume(unique('sanity-controller-create-appropriate'))).volume.volumeId;
      await runControllerTest(1);
      await runControllerTest(IDEMPOTENT_COUNT);
      await node('NodeUnpublishVolume', { volumeId: never, targetPath: targetPath() });
      await node('NodeUnstageVolume', { volumeId: never, stagingTargetPath: stagingPath() });
      await controller('DeleteVolume', { volumeId: never });
      expect(await volumeIds()).toEqual([]);
    });
  });

  describe("with local: csi-sanity's cleanup beside a volume in use", () => {
    servePlugin('local');

    // csi-sanity's Resources.Cleanup sends NodeUnpublishVolume and NodeUnstageVolume for each
    // volume it made at its one target and staging path. Named for another volume than the one
    // there, they must leave that volume's mounts alone: they answer OK (the named volume is not
    // published there) and nothing is unmounted. (Before the fix they unmounted the other volume:
    // the request's volume_id was not looked at.)
    it('NodeUnpublishVolume and NodeUnstageVolume of another volume leave the volume at those paths alone', async () => {
      const inUse = (await createVolume('sanity-in-use')).volume.volumeId;
      const other = (await createVolume('sanity-other')).volume.volumeId;
      await node('NodeStageVolume', {
        volumeId: inUse,
        stagingTargetPath: stagingPath(),
        volumeCapability: snw(),
      });
      await node('NodePublishVolume', {
        volumeId: inUse,
        stagingTargetPath: stagingPath(),
        targetPath: targetPath(),
        volumeCapability: snw(),
      });
      const table = () => [...p.t.mounter.table.keys()].sort();
      const refs = async () => (await p.t.store.getMounts(inUse)).map((m) => m.refs);
      const before = { table: table(), refs: await refs() };
      expect(before.table).toHaveLength(3);

      await node('NodeUnpublishVolume', { volumeId: other, targetPath: targetPath() });
      await node('NodeUnstageVolume', { volumeId: other, stagingTargetPath: stagingPath() });
      await node('NodeUnpublishVolume', { volumeId: 'fake-volume-id', targetPath: targetPath() });
      await node('NodeUnstageVolume', { volumeId: 'fake-volume-id', stagingTargetPath: stagingPath() });
      expect({ table: table(), refs: await refs() }).toEqual(before);
      expect(existsSync(targetPath())).toBe(true);

      // Named for the volume that is there, they take it back as before.
      await node('NodeUnpublishVolume', { volumeId: inUse, targetPath: targetPath() });
      await node('NodeUnstageVolume', { volumeId: inUse, stagingTargetPath: stagingPath() });
      expect(table()).toEqual([]);
    });
  });

  describe('with an attachable disk (controller publish)', () => {
    servePlugin('disk');
    it('should work', async () => {
      await runControllerTest(1);
      expect(p.disk!.attached.size).toBe(0);
    });
    it('should be idempotent', async () => {
      await runControllerTest(IDEMPOTENT_COUNT);
      expect(p.disk!.attached.size).toBe(0);
    });
  });
});

/** csi-sanity's ExpandVolume cases: run for a plugin that advertises EXPAND_VOLUME (ebs). */
describe('ExpandVolume [Controller Server]', () => {
  servePlugin('disk');

  /** csi-sanity's TestVolumeExpandSize: the test volume size plus 1 GiB. */
  const expandSize = TEST_VOLUME_SIZE + GiB;

  it('ControllerGetCapabilities advertises EXPAND_VOLUME, so csi-sanity runs these cases', async () => {
    expect(await rpcCapabilities('Controller')).toContain('EXPAND_VOLUME');
  });

  it('should fail if no volume id is given', async () => {
    const res = controller('ControllerExpandVolume', {
      volumeId: '',
      capacityRange: range(expandSize),
      volumeCapability: snw(),
    });
    expect(await statusOf(res)).toBe('INVALID_ARGUMENT');
  });

  it('should fail if no capacity range is given', async () => {
    // As in csi-sanity, the volume id is empty too.
    expect(await statusOf(controller('ControllerExpandVolume', { volumeId: '' }))).toBe('INVALID_ARGUMENT');
    // With a volume that exists, the missing range alone is refused, and nothing grows.
    const vol = await createVolume(unique('sanity-expand-volume-no-range'), {
      capacityRange: range(TEST_VOLUME_SIZE),
    });
    const res = controller('ControllerExpandVolume', { volumeId: vol.volume.volumeId });
    expect(await statusOf(res)).toBe('INVALID_ARGUMENT');
    expect((await p.t.manager.get('disk', vol.volume.volumeId)).volume.fields.sizeGiB).toBe(1);
  });

  it('should work', async () => {
    const vol = await createVolume(unique('sanity-expand-volume'), {
      capacityRange: range(TEST_VOLUME_SIZE),
    });
    const res = await controller('ControllerExpandVolume', {
      volumeId: vol.volume.volumeId,
      capacityRange: range(expandSize),
      volumeCapability: snw(),
    });
    expect(Number(res.capacityBytes)).toBe(expandSize);
  });
});

/**
 * The snapshot cases, for a plugin that advertises CREATE_DELETE_SNAPSHOT and LIST_SNAPSHOTS
 * (ebs; here its traits over snapshots kept in memory). csi-sanity's MakeCreateVolumeReq and
 * MakeCreateSnapshotReq; snapshots are ready once the fake storage finishes them.
 */
describe('snapshots (ebs traits, snapshots in memory)', () => {
  servePlugin('snapdisk');

  const makeVolume = async (name: string) => (await createVolume(name)).volume.volumeId as string;
  const createSnapshot = (name: string, sourceVolumeId: string) =>
    controller('CreateSnapshot', { name, sourceVolumeId });
  /** csi-sanity's MustCreateSnapshotFromVolumeRequest. */
  async function snapshotOfNewVolume(volumeName: string, snapshotName: string) {
    const res = await createSnapshot(snapshotName, await makeVolume(volumeName));
    verifySnapshotInfo(res.snapshot);
    return res.snapshot as { snapshotId: string; sourceVolumeId: string };
  }
  function verifySnapshotInfo(s: { snapshotId: string; sourceVolumeId: string; creationTime?: unknown }) {
    expect(s.snapshotId).not.toBe('');
    expect(s.sourceVolumeId).not.toBe('');
    expect(s.creationTime).toBeTruthy();
  }
  const listSnapshots = async (req: Record<string, unknown> = {}) => {
    const res = await controller('ListSnapshots', req);
    return res.entries as { snapshot: { snapshotId: string; sourceVolumeId: string } }[];
  };

  it('Controller Service [Controller Server] CreateVolume should create volume from an existing source snapshot', async () => {
    const source = await makeVolume(unique('sanity-controller-source-vol'));
    const snapName = unique('sanity-controller-snap-from-vol');
    const snap = (await createSnapshot(snapName, source)).snapshot;
    // csi-sanity repeats CreateSnapshot until ready_to_use: the storage finishes it meanwhile.
    expect(snap.readyToUse).toBe(false);
    p.snapshots!.finish(snap.snapshotId);
    const ready = (await createSnapshot(snapName, source)).snapshot;
    expect(ready).toMatchObject({ snapshotId: snap.snapshotId, readyToUse: true });
    const res = await createVolume(unique('sanity-controller-vol-from-snap'), {
      volumeContentSource: { snapshot: { snapshotId: snap.snapshotId } },
    });
    expect(res.volume.contentSource?.snapshot?.snapshotId).toBe(snap.snapshotId);
  });

  it('Controller Service [Controller Server] CreateVolume should fail when the volume source snapshot is not found', async () => {
    const res = createVolume(unique('sanity-controller-vol-from-snap'), {
      volumeContentSource: { snapshot: { snapshotId: 'non-existing-snapshot-id' } },
    });
    expect(await statusOf(res)).toBe('NOT_FOUND');
    expect(await volumeIds()).toEqual([]);
  });

  it('ListSnapshots [Controller Server] should return appropriate values (no optional values added)', async () => {
    await snapshotOfNewVolume(unique('listSnapshots-volume'), unique('listSnapshots-snapshot'));
    const entries = await listSnapshots();
    expect(entries).toHaveLength(1);
    for (const e of entries) verifySnapshotInfo(e.snapshot);
  });

  it('ListSnapshots [Controller Server] should return snapshots that match the specified snapshot id', async () => {
    await snapshotOfNewVolume(
      unique('listSnapshots-volume-unrelated-s-1'),
      unique('listSnapshots-snapshot-unrelated-s-1'),
    );
    const target = await snapshotOfNewVolume(
      unique('listSnapshots-volume-target-s'),
      unique('listSnapshots-snapshot-target-s'),
    );
    await snapshotOfNewVolume(
      unique('listSnapshots-volume-unrelated-s-2'),
      unique('listSnapshots-snapshot-unrelated-s-2'),
    );
    const entries = await listSnapshots({ snapshotId: target.snapshotId });
    expect(entries.map((e) => e.snapshot.snapshotId)).toEqual([target.snapshotId]);
  });

  it('ListSnapshots [Controller Server] should return empty when the specified snapshot id does not exist', async () => {
    expect(await listSnapshots({ snapshotId: 'none-exist-id' })).toEqual([]);
  });

  it('ListSnapshots [Controller Server] should return snapshots that match the specified source volume id', async () => {
    await snapshotOfNewVolume(
      unique('listSnapshots-volume-unrelated-v-1'),
      unique('listSnapshots-snapshot-unrelated-v-1'),
    );
    const target = await snapshotOfNewVolume(
      unique('listSnapshots-volume-target-v'),
      unique('listSnapshots-snapshot-target-v'),
    );
    await snapshotOfNewVolume(
      unique('listSnapshots-volume-unrelated-v-2'),
      unique('listSnapshots-snapshot-unrelated-v-2'),
    );
    const entries = await listSnapshots({ sourceVolumeId: target.sourceVolumeId });
    expect(entries.map((e) => e.snapshot.snapshotId)).toEqual([target.snapshotId]);
  });

  it('ListSnapshots [Controller Server] should return empty when the specified source volume id does not exist', async () => {
    expect(await listSnapshots({ sourceVolumeId: 'fake-volume-id' })).toEqual([]);
  });

  it('ListSnapshots [Controller Server] check the presence of new snapshots in the snapshot list', async () => {
    const before = (await listSnapshots()).length;
    const snap = await snapshotOfNewVolume(
      unique('listSnapshots-volume-3'),
      unique('listSnapshots-snapshot-3'),
    );
    expect(await listSnapshots()).toHaveLength(before + 1);
    await controller('DeleteSnapshot', { snapshotId: snap.snapshotId });
    expect(await listSnapshots()).toHaveLength(before);
  });

  it('ListSnapshots [Controller Server] should return next token when a limited number of entries are requested', async () => {
    for (let i = 1; i <= 5; i++) await snapshotOfNewVolume(unique(`volume${i}`), unique(`snapshot${i}`));
    const first = await controller('ListSnapshots', { maxEntries: 2 });
    expect(first.entries).toHaveLength(2);
    const rest = await listSnapshots({ startingToken: first.nextToken });
    expect(rest).toHaveLength(3);
  });

  it('DeleteSnapshot [Controller Server] should fail when no snapshot id is provided', async () => {
    expect(await statusOf(controller('DeleteSnapshot', {}))).toBe('INVALID_ARGUMENT');
  });

  it('DeleteSnapshot [Controller Server] should succeed when an invalid snapshot id is used', async () => {
    await controller('DeleteSnapshot', { snapshotId: 'reallyfakesnapshotid' });
  });

  it('DeleteSnapshot [Controller Server] should return appropriate values (no optional values added)', async () => {
    const snap = await createSnapshot(
      unique('DeleteSnapshot-snapshot-1'),
      await makeVolume(unique('DeleteSnapshot-volume-1')),
    );
    verifySnapshotInfo(snap.snapshot);
    await controller('DeleteSnapshot', { snapshotId: snap.snapshot.snapshotId });
    expect(await listSnapshots()).toEqual([]);
  });

  it('CreateSnapshot [Controller Server] should fail when no name is provided', async () => {
    expect(await statusOf(controller('CreateSnapshot', { sourceVolumeId: 'testId' }))).toBe(
      'INVALID_ARGUMENT',
    );
  });

  it('CreateSnapshot [Controller Server] should fail when no source volume id is provided', async () => {
    expect(await statusOf(controller('CreateSnapshot', { name: 'name' }))).toBe('INVALID_ARGUMENT');
  });

  it('CreateSnapshot [Controller Server] should succeed when requesting to create a snapshot with already existing name and same source volume ID', async () => {
    const volume = await makeVolume(unique('CreateSnapshot-volume-1'));
    const name = unique('CreateSnapshot-snapshot-1');
    const first = await createSnapshot(name, volume);
    const second = await createSnapshot(name, volume);
    expect(second.snapshot.snapshotId).toBe(first.snapshot.snapshotId);
  });

  it('CreateSnapshot [Controller Server] should fail when requesting to create a snapshot with already existing name and different source volume ID', async () => {
    const name = unique('CreateSnapshot-snapshot-2');
    await snapshotOfNewVolume(unique('CreateSnapshot-volume-2'), name);
    const volume2 = await makeVolume(unique('CreateSnapshot-volume-3'));
    expect(await statusOf(createSnapshot(name, volume2))).toBe('ALREADY_EXISTS');
    expect(await listSnapshots()).toHaveLength(1);
  });

  it('CreateSnapshot [Controller Server] should succeed when creating snapshot with maximum-length name', async () => {
    const volume = await makeVolume(unique('CreateSnapshot-volume-maxlen-name'));
    const name = `${unique('CreateSnapshot-snapshot-maxlen')}-`.padEnd(MAX_NAME_LENGTH, 'x');
    const first = await createSnapshot(name, volume);
    const second = await createSnapshot(name, volume);
    expect(second.snapshot.snapshotId).toBe(first.snapshot.snapshotId);
  });
});
