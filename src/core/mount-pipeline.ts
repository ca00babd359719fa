import { mkdir } from 'node:fs/promises';
import { formatMs, pollUntil } from '../base/backoff.js';
import { parseDuration } from '../base/duration.js';
import { isStowageError, StowageError } from '../base/errors.js';
import type { Logger } from '../base/logger.js';
import type { Mounter } from '../mount/mounter.js';
import type { AttachmentRecord, VolumeRecord } from '../state/store.js';
import type { MountSpec, Timeouts } from './driver.js';

export interface PipelineDeps {
  mounter: Mounter;
  log: Logger;
  timeouts: Timeouts;
}

/**
 * The key, in a volume's recorded fields, of the filesystem stowage made on it (after its mkfs
 * succeeded). Written by the core, read back into the MountSpec, so later mounts skip blkid.
 */
export const MADE_FILESYSTEM = 'madeFilesystem';

/** The filesystem stowage recorded making on `volume`, if any. */
export function madeFilesystemOf(volume: VolumeRecord): string | undefined {
  const made = volume.fields[MADE_FILESYSTEM];
  return typeof made === 'string' ? made : undefined;
}

/** The MountSpec of a volume whose attachment gave a block device: what local and ebs both mount. */
export function blockMountSpec(volume: VolumeRecord, attachment: AttachmentRecord | undefined): MountSpec {
  if (!attachment?.device) {
    throw new StowageError('INTERNAL', `volume ${volume.name} has no attached device to mount`);
  }
  const made = madeFilesystemOf(volume);
  return {
    kind: 'block',
    device: attachment.device,
    fsType: String(volume.options.fsType),
    mountOptions: [],
    ...(made === undefined ? {} : { madeFilesystem: made }),
  };
}

export interface MountAtOptions {
  /**
   * Called right after this mount formatted the device (before mounting it), with the filesystem
   * type made: the caller records it, and later mounts of the volume need not probe.
   */
  onFormatted?: (fsType: string) => Promise<void>;
}

/**
 * The shared path from "the driver says the volume is here" to "it is mounted at target":
 * wait for the block device, format it only when blkid finds no filesystem (existing data, such
 * as a snapshot's, is never formatted over), create the mountpoint, mount. Idempotent: a target
 * that is already a mount point is left as it is.
 *
 * A volume stowage formatted itself (`spec.madeFilesystem`) is mounted as that type straight away,
 * without blkid: the device is the one the driver vouched for (local: the loop device checked to
 * back the volume's image), and mount reads the superblock anyway. If that mount fails (someone
 * reformatted or wiped the device), the device is probed as any other and mounted as what it holds
 * now; if it holds nothing, it is not formatted again: stowage made a filesystem there, so a blank
 * device now means something went wrong, and formatting would destroy what may still be data.
 */
export async function mountAt(
  deps: PipelineDeps,
  spec: MountSpec,
  target: string,
  opts: MountAtOptions = {},
): Promise<void> {
  // First, before touching the path: stat on a mountpoint whose server died would hang.
  if (await deps.mounter.isMountPoint(target)) return;
  if (spec.kind === 'nfs') return mountNfs(deps, spec, target);
  const { mounter, log, timeouts } = deps;
  // Probed at once (the common case: the device is there); then 10 ms, 20 ms, ... up to 1 s.
  await pollUntil(async () => ((await mounter.isBlockDevice(spec.device)) ? true : undefined), {
    timeoutMs: timeouts.deviceWaitMs,
    initialDelayMs: 10,
    maxDelayMs: 1000,
    what: `block device ${spec.device} to appear`,
    hint: 'The device was attached but the kernel did not show it; check dmesg.',
  });
  await mkdir(target, { recursive: true, mode: 0o755 });
  const mountAs = (fsType: string) =>
    mounter.mount(spec.device, target, { fsType, options: spec.mountOptions, timeoutMs: timeouts.mountMs });
  if (spec.madeFilesystem !== undefined) {
    try {
      await mountAs(spec.madeFilesystem);
      return;
    } catch (err) {
      if (isStowageError(err, 'TIMEOUT')) throw err; // the device hangs: probing it would hang too
      log.warn(
        { device: spec.device, recorded: spec.madeFilesystem, err: (err as Error).message },
        'mounting as the filesystem stowage made failed; probing the device',
      );
    }
  }
  let fsType = await mounter.probeFilesystem(spec.device);
  if (fsType === null) {
    if (spec.madeFilesystem !== undefined) {
      throw new StowageError(
        'CONFLICT',
        `${spec.device} shows no filesystem, but stowage made a ${spec.madeFilesystem} filesystem on this volume ` +
          'earlier; it will not format over what may still be data. Look at the device ' +
          `(blkid -p ${spec.device}; e2fsck -n ${spec.device} for ext4); if its contents are expendable, ` +
          'remove the volume and create it again',
      );
    }
    log.info({ device: spec.device, fsType: spec.fsType }, 'device is blank; formatting');
    await mounter.makeFilesystem(spec.device, spec.fsType);
    fsType = spec.fsType;
    await opts.onFormatted?.(fsType);
  } else if (fsType !== spec.fsType) {
    log.warn(
      { device: spec.device, found: fsType, requested: spec.fsType },
      'device already has another filesystem; mounting it as it is',
    );
  }
  await mountAs(fsType);
}

async function mountNfs(deps: PipelineDeps, spec: Extract<MountSpec, { kind: 'nfs' }>, target: string) {
  await mkdir(target, { recursive: true, mode: 0o755 });
  try {
    await deps.mounter.mount(spec.source, target, {
      fsType: spec.fsType,
      options: spec.mountOptions,
      timeoutMs: spec.timeoutMs,
    });
  } catch (err) {
    if (isStowageError(err, 'TIMEOUT')) {
      throw new StowageError(
        'TIMEOUT',
        `NFS server ${spec.server} did not answer within ${formatMs(spec.timeoutMs)} (mount of ${spec.source}); ` +
          'check that the server is up and reachable from this host, or raise the mountTimeout option',
        { cause: err },
      );
    }
    throw err;
  }
}

/**
 * Unmounts target. A lazy unmount is only a fallback for network filesystems whose server is gone
 * (`lazyFallback`); a busy block device stays mounted and the error reaches the caller, because
 * something still uses the data. Each of the two steps waits at most `timeoutMs` (default the
 * general mount deadline); see unmountDeadlineMs for a volume's own. `freeLoopDevice` (a volume on
 * a loop device of its own, Driver.unmountFreesLoop): the same umount frees the loop device.
 */
export async function unmountAt(
  deps: PipelineDeps,
  target: string,
  opts: { lazyFallback?: boolean; timeoutMs?: number; freeLoopDevice?: boolean } = {},
) {
  const timeoutMs = opts.timeoutMs ?? deps.timeouts.mountMs;
  try {
    await deps.mounter.unmount(target, {
      timeoutMs,
      ...(opts.freeLoopDevice ? { freeLoopDevice: true } : {}),
    });
  } catch (err) {
    if (!opts.lazyFallback) throw err;
    deps.log.warn({ target, err: (err as Error).message }, 'unmount failed; detaching the mount lazily');
    await deps.mounter.unmount(target, { lazy: true, timeoutMs });
  }
}

/**
 * How long one unmount step of `vol` may wait. A shared filesystem's volume carries its own
 * `mountTimeout` (nfs, efs): a umount against a dead server hangs just as a mount does (umount
 * stats the mountpoint), and the user said how long this server may take, so an Unmount is over
 * within about twice that (umount, then the lazy detach) rather than the general deadline.
 */
export function unmountDeadlineMs(vol: VolumeRecord, timeouts: Timeouts): number {
  const own = vol.options.mountTimeout;
  if (typeof own !== 'string') return timeouts.mountMs;
  try {
    return parseDuration(own);
  } catch {
    return timeouts.mountMs; // recorded by an older version in a form it no longer reads
  }
}
