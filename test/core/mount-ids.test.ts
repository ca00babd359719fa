import { describe, expect, it } from 'vitest';
import {
  csiPublishMountId,
  describeUsers,
  deviceMountId,
  isDeviceRef,
  podMountId,
  podOf,
  stageMountId,
  validateMountId,
} from '../../src/core/mount-ids.js';
import { failure } from '../helpers/failure.js';

const UID = '0b7c1d54-5f3a-4e8b-9c61-3a2f1e0d9c8b';

describe('mount ids', () => {
  it('makes ids that fit the store, per pod and volume directory', () => {
    expect(podMountId('u-1', 'data')).toBe('pod:u-1:data');
    const long = podMountId(UID, 'x'.repeat(120));
    expect(long).toMatch(new RegExp(`^pod:${UID}:[0-9a-f]{32}$`));
    expect(podMountId(UID, 'y'.repeat(120))).not.toBe(long);
    expect(deviceMountId('db')).toBe('device:db');
    expect(deviceMountId('d'.repeat(200))).toMatch(/^device:[0-9a-f]{32}$/);
    for (const id of [long, deviceMountId('d'.repeat(200)), podMountId(UID, 'data')]) {
      expect(() => validateMountId(id)).not.toThrow();
    }
  });

  it('reads back what it made: the pod, or kubelet device mount', () => {
    expect(podOf(podMountId(UID, 'data'))).toBe(UID);
    expect(podOf(podMountId(UID, 'x'.repeat(120)))).toBe(UID);
    expect(podOf(deviceMountId('db'))).toBeUndefined();
    expect(podOf('a'.repeat(64))).toBeUndefined();
    expect(isDeviceRef(deviceMountId('db'))).toBe(true);
    expect(isDeviceRef(podMountId(UID, 'data'))).toBe(false);
    expect(isDeviceRef('a'.repeat(64))).toBe(false);
  });

  it('names the users behind a host’s refs', () => {
    expect(describeUsers([podMountId('p1', 'a'), podMountId('p1', 'b'), podMountId('p2', 'a')])).toBe(
      'pods p1, p2',
    );
    expect(describeUsers([podMountId('p1', 'a'), 'c'.repeat(64)])).toBe('pod p1 and 1 Docker mount');
    expect(describeUsers(['c'.repeat(64), 'd'.repeat(64)])).toBe('2 Docker mounts');
  });

  it('counts CSI stages per staging path and CSI publishes per pod or target path', () => {
    const staging = '/var/lib/kubelet/plugins/kubernetes.io/csi/local.csi.stowage.io/abc/globalmount';
    expect(stageMountId(staging)).toMatch(/^stage:[0-9a-f]{32}$/);
    expect(stageMountId(staging)).toBe(stageMountId(staging));
    expect(stageMountId(`${staging}2`)).not.toBe(stageMountId(staging));
    expect(isDeviceRef(stageMountId(staging))).toBe(true);
    const target = `/var/lib/kubelet/pods/${UID}/volumes/kubernetes.io~csi/pvc-1/mount`;
    expect(csiPublishMountId(target)).toBe(`pod:${UID}:csi_pvc-1`);
    expect(podOf(csiPublishMountId(target))).toBe(UID);
    expect(isDeviceRef(csiPublishMountId(target))).toBe(false);
    const elsewhere = csiPublishMountId('/srv/targets/one');
    expect(elsewhere).toMatch(/^csi:[0-9a-f]{32}$/);
    expect(csiPublishMountId('/srv/targets/two')).not.toBe(elsewhere);
    for (const id of [stageMountId(staging), csiPublishMountId(target), elsewhere]) {
      expect(() => validateMountId(id)).not.toThrow();
    }
    expect(describeUsers([csiPublishMountId(target), elsewhere, 'c'.repeat(64)])).toBe(
      `pod ${UID} and 1 CSI publish and 1 Docker mount`,
    );
  });

  it('refuses ids the store cannot hold', async () => {
    for (const bad of ['', 'a'.repeat(129), 'pod:x/y', 'has space', 7]) {
      const err = await failure((async () => validateMountId(bad))());
      expect(err.code).toBe('INVALID_ARGUMENT');
      expect(err.message).toContain('invalid mount ID');
    }
  });
});
