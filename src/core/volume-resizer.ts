import { StowageError, toStowageError } from '../base/errors.js';
import type { Logger } from '../base/logger.js';
import type { Mounter } from '../mount/mounter.js';
import type { IntentOp, StateStore, VolumeRecord } from '../state/store.js';
import type { Attacher } from './attacher.js';
import type { Driver, MountSpec } from './driver.js';
import {
  assertGrowable,
  type GrowResult,
  growOffline,
  growUnmounted,
  type OfflinePlan,
  planOffline,
  restoreMounts,
  waitForDeviceSize,
} from './grow-pipeline.js';
import type { VolumeLocks } from './locks.js';
import { describeUsers, isDeviceRef } from './mount-ids.js';
import type { PipelineDeps } from './mount-pipeline.js';
import { validateVolumeName } from './names.js';
import type { DriverRegistry } from './registry.js';

/** What the resizer borrows from the VolumeManager that owns it. */
export interface ResizerDeps {
  host: string;
  store: StateStore;
  registry: DriverRegistry;
  mounter: Mounter;
  locks: VolumeLocks;
  log: Logger;
  attacher: Attacher;
  pipeline(log: Logger): PipelineDeps;
  mountpointFor(name: string): string;
  requireReady(driverName: string | undefined, name: string): Promise<VolumeRecord>;
  begin(volume: string, op: IntentOp, details: Record<string, unknown>): Promise<number>;
}

/**
 * Growing volumes: the storage (any host; the controller-manager's expandvolume) and then the
 * filesystem on the host that uses it (kubelet's expandfs). Each under the volume's lock; the
 * filesystem steps are in grow-pipeline.ts.
 */
export class VolumeResizer {
  constructor(private readonly d: ResizerDeps) {}

  /**
   * Grows the volume's storage to at least `newBytes` (rounded up by the driver, never shrunk)
   * and records the driver's updated fields. Runs on any host (Kubernetes' controller-manager);
   * the filesystem grows afterwards on the host that uses the volume (growFilesystem).
   */
  async expand(driverName: string, name: string, newBytes: number): Promise<{ sizeBytes: number }> {
    validateVolumeName(name);
    if (!Number.isSafeInteger(newBytes) || newBytes <= 0) {
      throw new StowageError('INVALID_ARGUMENT', `new size ${newBytes} is not a positive number of bytes`);
    }
    return this.d.locks.withLock(name, 'expand', async () => {
      const vol = await this.d.requireReady(driverName, name);
      const driver = this.d.registry.get(vol.driver);
      if (!driver.expand) {
        throw new StowageError('NOT_SUPPORTED', `driver ${vol.driver} cannot grow volumes (volume ${name})`);
      }
      const res = await driver.expand(vol, newBytes);
      if (res.fields) await this.d.store.updateVolume(name, { fields: res.fields });
      this.d.log.info(
        { op: 'expand', volume: name, driver: vol.driver, requested: newBytes, sizeBytes: res.sizeBytes },
        'volume storage grown',
      );
      return { sizeBytes: res.sizeBytes };
    });
  }

  /**
   * Grows the filesystem on the volume's device here to the device's size (after `minDeviceBytes`
   * shows, when given). Online when mounted; an ext4 filesystem that cannot grow online is grown
   * unmounted only when the mounts here serve nobody but kubelet's device mounts, and refused with
   * IN_USE otherwise: pods and containers are never cut off. See grow-pipeline.ts.
   */
  async growFilesystem(
    driverName: string,
    name: string,
    opts: { minDeviceBytes?: number } = {},
  ): Promise<GrowResult> {
    validateVolumeName(name);
    return this.d.locks.withLock(name, 'resize', async () => {
      const vol = await this.d.requireReady(driverName, name);
      const driver = this.d.registry.get(vol.driver);
      const log = this.d.log.child({ op: 'resize', volume: name, driver: vol.driver });
      const deps = this.d.pipeline(log);
      const left = (await this.d.store.listIntents(this.d.host)).find(
        (i) => i.volume === name && i.op === 'resize',
      );
      if (left)
        log.warn(`an earlier resize was interrupted: ${await this.finishResize(vol, driver, left, log)}`);
      const { device, spec } = await this.blockHere(vol, driver);
      if (opts.minDeviceBytes !== undefined) await waitForDeviceSize(deps, device, opts.minDeviceBytes);
      const fsType = await this.d.mounter.probeFilesystem(device);
      if (fsType === null) return { device, fsType, how: 'none' }; // formatted to full size at first mount
      assertGrowable(name, device, fsType);
      const target = this.d.mountpointFor(name);
      if (!(await this.d.mounter.isMountPoint(target))) {
        await growUnmounted(deps, device, fsType, target);
        return { device, fsType, how: 'offline' };
      }
      let online: unknown;
      try {
        await this.d.mounter.growFilesystem(device, fsType, { mountpoint: target });
        log.info({ device, fsType }, 'filesystem grown online');
        return { device, fsType, how: 'online' };
      } catch (err) {
        if (fsType !== 'ext4') throw toStowageError(err, `growing the filesystem of volume ${name}`);
        online = err;
      }
      const mount = (await this.d.store.getMounts(name)).find((m) => m.host === this.d.host);
      const users = Object.keys(mount?.refs ?? {}).filter((id) => !isDeviceRef(id));
      if (users.length > 0) {
        throw new StowageError(
          'IN_USE',
          `the filesystem of volume ${name} cannot grow now: it is used on host ${this.d.host} by ${describeUsers(users)}; ` +
            `growing it while mounted failed (${(online as Error).message}), and it is grown unmounted only when no pod or container uses it: ` +
            'it grows on a retry after they have stopped',
          { cause: online },
        );
      }
      log.info(
        { device, err: (online as Error).message },
        'online resize failed; growing the filesystem unmounted',
      );
      const plan = await planOffline(deps, target, fsType);
      const intent = await this.d.begin(name, 'resize', { ...plan });
      try {
        await growOffline(deps, device, spec, plan);
      } catch (err) {
        // Mounts that could not be put back keep the intent: the next call (or reconcile) does it.
        if ((err as StowageError).details?.restored !== false) await this.d.store.endIntent(intent);
        throw err;
      }
      await this.d.store.endIntent(intent);
      return { device, fsType, how: 'offline' };
    });
  }

  /** The volume's block device on this host and how it is mounted; refused when there is none. */
  private async blockHere(vol: VolumeRecord, driver: Driver): Promise<{ device: string; spec: MountSpec }> {
    if (!driver.needsAttach) {
      throw new StowageError(
        'NOT_SUPPORTED',
        `volume ${vol.name} (driver ${vol.driver}) has no block device of its own: there is no filesystem for stowage to grow`,
      );
    }
    const attachment = (await this.d.store.getAttachments(vol.name)).find(
      (a) => a.host === this.d.host && a.state === 'attached',
    );
    if (!attachment) {
      throw new StowageError(
        'NOT_FOUND',
        `volume ${vol.name} is not attached to host ${this.d.host}; its filesystem grows on the host it is attached to`,
      );
    }
    const spec = await driver.mountSpec(vol, await this.d.attacher.local(vol, driver, attachment));
    if (spec.kind !== 'block') {
      throw new StowageError('NOT_SUPPORTED', `volume ${vol.name} is not mounted from a block device`);
    }
    return { device: spec.device, spec };
  }

  /**
   * Finishes an offline resize whose process died between unmounting and mounting back: grows
   * the bare filesystem if it is still unmounted, then puts the recorded mounts back. Says what
   * it did; throws only when the mounts could not be put back (the intent then stays open).
   */
  async finishResize(
    vol: VolumeRecord,
    driver: Driver,
    intent: { id: number; details: Record<string, unknown> },
    log: Logger,
  ): Promise<string> {
    const plan = intent.details as unknown as OfflinePlan;
    const deps = this.d.pipeline(log);
    const { device, spec } = await this.blockHere(vol, driver);
    let grown = '';
    if (!(await this.d.mounter.isMountPoint(plan.target))) {
      grown = await growUnmounted(deps, device, plan.fsType, plan.target).then(
        () => 'filesystem grown; ',
        (err: unknown) => `filesystem not grown (${(err as Error).message}); `,
      );
    }
    await restoreMounts(deps, spec, { ...plan, binds: Array.isArray(plan.binds) ? plan.binds : [] });
    await this.d.store.endIntent(intent.id);
    return `${grown}mounts put back`;
  }
}
