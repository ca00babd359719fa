import { mkdir, rmdir } from 'node:fs/promises';
import { isAbsolute, normalize } from 'node:path';
import { StowageError, toStowageError } from '../base/errors.js';
import type { Logger } from '../base/logger.js';
import type { FileOps } from '../mount/file-ops.js';
import type { Mounter } from '../mount/mounter.js';
import type { IntentOp, IntentRecord, MountRecord, StateStore, VolumeRecord } from '../state/store.js';
import { crashPoint } from './crash-points.js';
import type { Driver, Timeouts } from './driver.js';
import type { VolumeLocks } from './locks.js';
import { validateMountId } from './mount-ids.js';
import { unmountDeadlineMs } from './mount-pipeline.js';
import { validateVolumeName } from './names.js';

/**
 * Publishing: showing a volume that is mounted on this host at a path another party owns (a pod's
 * volume directory for kubelet, later CSI's target paths) as a bind mount of stowage's mountpoint,
 * counted under a mount id like any Docker mount. Neither side can unmount the other's users: the
 * volume stays mounted while any id counts it.
 *
 * Each step runs under the volume's lock with an intent in the journal, in an order that a crash
 * anywhere leaves something reconcile can finish: publish counts the id first and binds second;
 * unpublish unbinds first and releases the count second. So a count without its bind (or an open
 * unpublish) is released by reconcile, and a bind is never left without a count.
 */
export interface PublisherDeps {
  host: string;
  store: StateStore;
  mounter: Mounter;
  files: FileOps;
  timeouts: Timeouts;
  locks: VolumeLocks;
  log: Logger;
  /** The volume ready, else NOT_FOUND or BUSY (the caller's rule for every use). */
  requireReady(driverName: string | undefined, name: string): Promise<VolumeRecord>;
  driverOf(vol: VolumeRecord): Driver;
  /** Mounts the volume here and counts `id`; the caller holds the lock. Returns the mountpoint. */
  mountHere(vol: VolumeRecord, driver: Driver, id: string, log: Logger): Promise<string>;
  /** Releases one count of `id` (tearing down at zero); the caller holds the lock. */
  releaseHere(vol: VolumeRecord, id: string, log: Logger): Promise<void>;
  begin(volume: string, op: IntentOp, details: Record<string, unknown>): Promise<number>;
}

/** What to show where: `volume` (of `driver`, when given) at `target`, counted under `id`. */
export interface PublishRequest {
  driver?: string;
  volume: string;
  id: string;
  target: string;
  readOnly?: boolean;
  /**
   * A group (gid) the volume's root directory is given before the bind (CSI's volume_mount_group,
   * a pod's fsGroup): group rwx and setgid on that one directory, never recursive.
   */
  group?: number;
  /** More options of the bind mount, from BIND_MOUNT_FLAGS (a PV's mountOptions). */
  flags?: readonly string[];
}

/**
 * Options a bind mount can carry without touching the volume's one mount under the mount root,
 * which Docker users and other pods share: they restrict what this one view allows.
 */
export const BIND_MOUNT_FLAGS: readonly string[] = [
  'nosuid',
  'nodev',
  'noexec',
  'noatime',
  'nodiratime',
  'relatime',
];

export class Publisher {
  constructor(private readonly d: PublisherDeps) {}

  async publish(req: PublishRequest): Promise<void> {
    const { driver: driverName, volume: name, id, target } = req;
    validateVolumeName(name);
    validateMountId(id);
    const path = cleanTarget(target);
    const flags = checkFlags(req.flags ?? []);
    if (req.group !== undefined && (!Number.isSafeInteger(req.group) || req.group < 0)) {
      throw new StowageError('INVALID_ARGUMENT', `group ${req.group} is not a group id (a whole number ≥ 0)`);
    }
    await this.d.locks.withLock(name, 'publish', async () => {
      const vol = await this.d.requireReady(driverName, name);
      const driver = this.d.driverOf(vol);
      const log = this.d.log.child({ op: 'publish', volume: name, driver: vol.driver });
      const counted = await this.countedHere(name, id);
      if (await this.d.mounter.isMountPoint(path)) {
        // Done by an earlier try whose reply was lost, unless that one asked for another access.
        if (counted) return this.assertSameAccess(path, req.readOnly === true, name);
        throw new StowageError(
          'IN_USE',
          `${path} is already a mount point that stowage did not make for ${id}; unmount it, then try again`,
        );
      }
      const intent = await this.d.begin(name, 'publish', { id, target: path });
      let countedNow = false;
      try {
        let source = counted?.mountpoint;
        if (!counted || !(await this.d.mounter.isMountPoint(counted.mountpoint))) {
          source = await this.d.mountHere(vol, driver, id, log);
          countedNow = true;
        }
        crashPoint('publish:counted');
        if (req.group !== undefined) await this.shareWithGroup(vol, source as string, req.group);
        await mkdir(path, { recursive: true, mode: 0o750 });
        const options = ['bind', ...(req.readOnly ? ['ro'] : []), ...flags];
        await this.d.mounter.mount(source as string, path, { options });
        log.info({ id, target: path, readOnly: req.readOnly === true }, 'published');
      } catch (err) {
        if (countedNow) await this.d.releaseHere(vol, id, log).catch(() => undefined);
        throw toStowageError(err, `publish of volume ${name} at ${path}`);
      } finally {
        await this.d.store.endIntent(intent);
      }
    });
  }

  /**
   * The inverse of publish, by mount id and path alone (kubelet's unmount names no volume). A path
   * that is not published is unmounted if it is a mount point and is otherwise success.
   */
  async unpublish(id: string, target: string, opts: UnpublishOptions = {}): Promise<void> {
    validateMountId(id);
    const path = cleanTarget(target);
    const holder = (await this.d.store.listMountsByHost(this.d.host)).find((m) => (m.refs[id] ?? 0) > 0);
    if (holder && opts.volume !== undefined && holder.volume !== opts.volume) return;
    if (!holder) {
      await this.d.mounter.unmount(path);
      if (opts.removeTarget) await this.removeTarget(path);
      return;
    }
    await this.d.locks.withLock(holder.volume, 'unpublish', async () => {
      const vol = await this.d.store.getVolume(holder.volume);
      if (!vol) {
        await this.d.mounter.unmount(path);
        return;
      }
      const log = this.d.log.child({ op: 'unpublish', volume: vol.name, driver: vol.driver });
      const intent = await this.d.begin(vol.name, 'unpublish', { id, target: path });
      try {
        await this.d.mounter.unmount(path);
        crashPoint('unpublish:unbound');
        await this.d.releaseHere(vol, id, log); // a no-op for an id no longer counted
        if (opts.removeTarget) await this.removeTarget(path);
        log.info({ id, target: path }, 'unpublished');
      } catch (err) {
        throw toStowageError(err, `unpublish of volume ${vol.name} from ${path}`);
      } finally {
        await this.d.store.endIntent(intent);
      }
    });
  }

  /**
   * Settles a publish or unpublish that a crash interrupted; the caller holds the volume's lock.
   * A published path stays as it is; a count without its bind, or one whose unpublish began, is
   * released (kubelet retries what it still wants). Returns what was done.
   */
  async finishInterrupted(vol: VolumeRecord, intent: IntentRecord, log: Logger): Promise<string> {
    const id = String(intent.details.id ?? '');
    const target = String(intent.details.target ?? '');
    if (id === '' || target === '') return 'nothing recorded to settle';
    let bound = await this.d.mounter.isMountPoint(target);
    if (intent.op === 'unpublish' && bound) {
      await this.d.mounter.unmount(target);
      bound = false;
    }
    const counted = (await this.refsHere(vol.name, id)) > 0;
    if (bound) return counted ? 'published; kept' : 'a bind nobody counts: left for its unpublish';
    if (!counted) return intent.op === 'publish' ? 'nothing was made' : 'finished';
    await this.d.releaseHere(vol, id, log);
    return intent.op === 'publish' ? 'its count without a bind released' : 'finished';
  }

  /**
   * A repeated publish must ask for what is there: the same target read-only where it is bound
   * read-write (or the other way) is CONFLICT, since changing it under a running pod is not ours.
   */
  private async assertSameAccess(path: string, readOnly: boolean, name: string): Promise<void> {
    const top = (await this.d.mounter.listMounts()).filter((m) => m.mountPoint === path).at(-1);
    const boundReadOnly = top?.options.split(',').includes('ro') === true;
    if (top === undefined || boundReadOnly === readOnly) return;
    const how = (ro: boolean) => (ro ? 'read-only' : 'read-write');
    throw new StowageError(
      'CONFLICT',
      `volume ${name} is already published at ${path} ${how(boundReadOnly)}; unpublish it first to publish it there ${how(readOnly)}`,
    );
  }

  /** The group share of the volume's root directory, with the volume's own deadline. */
  private async shareWithGroup(vol: VolumeRecord, root: string, gid: number): Promise<void> {
    try {
      await this.d.files.shareWithGroup(root, gid, unmountDeadlineMs(vol, this.d.timeouts));
    } catch (err) {
      throw new StowageError(
        'NOT_SUPPORTED',
        `volume ${vol.name}: its root directory could not be given to group ${gid} (${(err as Error).message}); ` +
          'the filesystem does not allow it (a share that squashes root?): publish it without a mount group',
        { cause: err },
      );
    }
  }

  /**
   * The target directory publish made, removed once nothing is mounted there (CSI: the plugin
   * deletes what it created). rmdir refuses a directory with anything in it: that is data written
   * while nothing was mounted there, and it is left, with a warning, rather than deleted.
   */
  private async removeTarget(path: string): Promise<void> {
    try {
      await rmdir(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      this.d.log.warn({ target: path, err: (err as Error).message }, 'target directory left in place');
    }
  }

  /** The mount of the volume on this host that counts `id`, when it is mounted. */
  private async countedHere(volume: string, id: string): Promise<MountRecord | undefined> {
    return (await this.d.store.getMounts(volume)).find(
      (m) => m.host === this.d.host && m.state === 'mounted' && (m.refs[id] ?? 0) > 0,
    );
  }

  /** How often this host's record of the volume counts `id`, whatever its state. */
  private async refsHere(volume: string, id: string): Promise<number> {
    const m = (await this.d.store.getMounts(volume)).find((x) => x.host === this.d.host);
    return m?.refs[id] ?? 0;
  }
}

export interface UnpublishOptions {
  /** Remove the target directory once unbound (CSI); kubelet removes its flexvolume directories itself. */
  removeTarget?: boolean;
  /**
   * The volume the caller means (CSI names one): when the path's user belongs to another volume,
   * that volume is not published there, and nothing is touched.
   */
  volume?: string;
}

function checkFlags(flags: readonly string[]): string[] {
  const unknown = flags.filter((f) => !BIND_MOUNT_FLAGS.includes(f));
  if (unknown.length > 0) {
    throw new StowageError(
      'INVALID_ARGUMENT',
      `mount flag${unknown.length === 1 ? '' : 's'} ${unknown.join(', ')} cannot be applied to a published view ` +
        `of the volume (only ${BIND_MOUNT_FLAGS.join(', ')} and ro): the volume is mounted once per host for ` +
        'all its users; set filesystem options when the volume is created',
    );
  }
  return [...new Set(flags)];
}

/**
 * Targets come from the door (kubelet's pod directories, CSI's target paths), which checks they are
 * its own; the core still refuses what is not a clean absolute path, since it mounts as root.
 */
function cleanTarget(target: string): string {
  const trimmed = target.replace(/\/+$/, '');
  if (!isAbsolute(target) || normalize(trimmed) !== trimmed || trimmed === '') {
    throw new StowageError('PERMISSION_DENIED', `${JSON.stringify(target)} is not a clean absolute path`);
  }
  return trimmed;
}
