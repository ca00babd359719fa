import { mkdir } from 'node:fs/promises';
import type { Logger } from 'pino';
import { formatMs, pollUntil } from '../base/backoff.js';
import { parseDuration } from '../base/duration.js';
import { isStowageError, StowageError } from '../base/errors.js';
import type { Mounter } from '../mount/mounter.js';
import type { AttachmentRecord, VolumeRecord } from '../state/store.js';
import type { MountSpec, Timeouts } from './driver.js';

export interface PipelineDeps {
  mounter: Mounter;
  log: Logger;
  timeouts: Timeouts;
}

/** The MountSpec of a volume whose attachment gave a block device: what local and ebs both mount. */
export function blockMountSpec(volume: VolumeRecord, attachment: AttachmentRecord | undefined): MountSpec {
  if (!attachment?.device) {
    throw new StowageError('INTERNAL', `volume ${volume.name} has no attached device to mount`);
  }
  return {
    kind: 'block',
    device: attachment.device,
    fsType: String(volume.options.fsType),
    mountOptions: [],
  };
}

/**
 * The shared path from "the driver says the volume is here" to "it is mounted at target":
 * wait for the block device, format it only when blkid finds no filesystem (existing data, such
 * as a snapshot's, is never formatted over), create the mountpoint, mount. Idempotent: a target
 * that is already a mount point is left as it is.
 */
export async function mountAt(deps: PipelineDeps, spec: MountSpec, target: string): Promise<void> {
  // First, before touching the path: stat on a mountpoint whose server died would hang.
  if (await deps.mounter.isMountPoint(target)) return;
  if (spec.kind === 'nfs') return mountNfs(deps, spec, target);
  const { mounter, log, timeouts } = deps;
  await pollUntil(async () => ((await mounter.isBlockDevice(spec.device)) ? true : undefined), {
    timeoutMs: timeouts.deviceWaitMs,
    initialDelayMs: 10,
    maxDelayMs: 1000,
    what: `block device ${spec.device} to appear`,
    hint: 'The device was attached but the kernel did not show it; check dmesg.',
  });
  let fsType = await mounter.probeFilesystem(spec.device);
  if (fsType === null) {
    log.info({ device: spec.device, fsType: spec.fsType }, 'device is blank; formatting');
    await mounter.makeFilesystem(spec.device, spec.fsType);
    fsType = spec.fsType;
  } else if (fsType !== spec.fsType) {
    log.warn(
      { device: spec.device, found: fsType, requested: spec.fsType },
      'device already has another filesystem; mounting it as it is',
    );
  }
  await mkdir(target, { recursive: true, mode: 0o755 });
  await mounter.mount(spec.device, target, {
    fsType,
    options: spec.mountOptions,
    timeoutMs: timeouts.mountMs,
  });
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
 * general mount deadline); see unmountDeadlineMs for a volume's own.
 */
export async function unmountAt(
  deps: PipelineDeps,
  target: string,
  opts: { lazyFallback?: boolean; timeoutMs?: number } = {},
) {
  const timeoutMs = opts.timeoutMs ?? deps.timeouts.mountMs;
  try {
    await deps.mounter.unmount(target, { timeoutMs });
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
