import { join, relative, resolve } from 'node:path';
import { pollUntil } from '../base/backoff.js';
import { StowageError, toStowageError } from '../base/errors.js';
import type { MountEntry } from '../mount/mountinfo.js';
import type { MountSpec } from './driver.js';
import { mountAt, type PipelineDeps, unmountAt } from './mount-pipeline.js';

/**
 * Growing the filesystem of a block volume on this host, after its device has grown. Online
 * first; an ext4 filesystem whose online resize fails (no CAP_SYS_RESOURCE, an old kernel) is
 * grown unmounted, but only when nothing but kubelet's own device mount uses it: every mount of
 * it here (stowage's mountpoint and the bind mounts of it) goes, e2fsck and resize2fs run on the
 * bare device, and the same mounts come back. The caller holds the volume's lock. Everything
 * asked of the host (mount table, device numbers, sizes) goes through the Mounter, so the fake
 * kernel of the unit tests answers the same questions as Linux does.
 */

/** How the filesystem was grown (`none`: a blank device, formatted to its full size later). */
export type GrowHow = 'online' | 'offline' | 'none';

export interface GrowResult {
  device: string;
  fsType: string | null;
  how: GrowHow;
}

/** A mount of the volume's filesystem besides stowage's own, put back after an offline resize. */
export interface BindMount {
  mountPoint: string;
  /** The directory it shows, relative to stowage's mountpoint ('' for the whole filesystem). */
  sub: string;
  /** Per-mount flags to keep: ro, nosuid, nodev, noexec. */
  flags: string[];
}

/** What an offline resize changes: recorded in the intent journal before the first unmount. */
export interface OfflinePlan {
  target: string;
  fsType: string;
  binds: BindMount[];
}

const GROWABLE = new Set(['ext4', 'xfs']);
const KEPT_FLAGS = new Set(['ro', 'nosuid', 'nodev', 'noexec']);

export function assertGrowable(name: string, device: string, fsType: string): void {
  if (!GROWABLE.has(fsType)) {
    throw new StowageError(
      'NOT_SUPPORTED',
      `volume ${name} has a ${fsType} filesystem on ${device}; stowage grows only ext4 and xfs`,
    );
  }
}

/**
 * Waits (bounded by deviceWaitMs) until the device shows at least `minBytes`: the cloud grows a
 * disk before the host sees it, and growing the filesystem earlier would silently do nothing.
 */
export async function waitForDeviceSize(
  deps: PipelineDeps,
  device: string,
  minBytes: number,
): Promise<number> {
  return pollUntil(
    async () => {
      const size = await deps.mounter.deviceSize(device);
      return size >= minBytes ? size : undefined;
    },
    {
      timeoutMs: deps.timeouts.deviceWaitMs,
      initialDelayMs: 20,
      maxDelayMs: 1000,
      what: `block device ${device} to show at least ${minBytes} bytes`,
      hint: 'The storage was not grown yet (expandvolume first), or this host has not noticed.',
    },
  );
}

/**
 * Every other mount of the filesystem mounted at `target` (same device id: bind mounts, and
 * mounts of subdirectories of it). One that shows something outside what `target` shows could
 * not be put back from it: refused before anything is unmounted.
 */
export async function planOffline(deps: PipelineDeps, target: string, fsType: string): Promise<OfflinePlan> {
  const all = await deps.mounter.listMounts();
  const main = all.find((m) => m.mountPoint === resolve(target));
  if (!main) throw new StowageError('INTERNAL', `${target} is not in the mount table`);
  const binds: BindMount[] = [];
  for (const m of all) {
    if (m === main || m.majorMinor !== main.majorMinor) continue;
    const sub = relative(main.root, m.root);
    if (sub.startsWith('..')) {
      throw new StowageError(
        'IN_USE',
        `${m.mountPoint} shows ${m.root} of the filesystem, which ${target} does not: it was mounted outside stowage; unmount it, then try again`,
      );
    }
    binds.push({ mountPoint: m.mountPoint, sub, flags: flagsOf(m) });
  }
  return { target, fsType, binds };
}

/**
 * Unmounts the bind mounts and stowage's mountpoint, checks and grows the bare filesystem, and
 * mounts everything back, also when a step failed. Throws the first failure; when mounting back
 * fails, the error says so and its details have `restored: false` (keep the intent open).
 */
export async function growOffline(
  deps: PipelineDeps,
  device: string,
  spec: MountSpec,
  plan: OfflinePlan,
): Promise<void> {
  let failure: unknown;
  let unmounting = '';
  try {
    for (const path of [...plan.binds.map((b) => b.mountPoint).reverse(), plan.target]) {
      unmounting = path;
      await unmountAt(deps, path);
    }
    unmounting = '';
    await checkAndGrow(deps, device, plan.fsType);
  } catch (err) {
    failure = unmounting
      ? new StowageError(
          'IN_USE',
          `${unmounting} could not be unmounted (${(err as Error).message}): something on this host uses the volume besides pods and containers; its filesystem grows when that has stopped`,
          { cause: err },
        )
      : err;
  }
  try {
    await restoreMounts(deps, spec, plan);
  } catch (err) {
    const before = failure ? `${(failure as Error).message}; then ` : '';
    throw new StowageError(
      'INTERNAL',
      `${before}mounting the volume back failed: ${(err as Error).message}; the next expandfs, or the stowage daemon's start, puts its mounts back`,
      { cause: err, details: { restored: false } },
    );
  }
  if (failure) throw toStowageError(failure, `offline resize of ${device}`);
}

/** The filesystem of a device mounted nowhere on this host: checked and grown bare (xfs: mounted briefly at target). */
export async function growUnmounted(
  deps: PipelineDeps,
  device: string,
  fsType: string,
  target: string,
): Promise<void> {
  if (fsType === 'xfs') {
    await assertNotMounted(deps, device);
    await mountAt(deps, { kind: 'block', device, fsType, mountOptions: [] }, target);
    try {
      await deps.mounter.growFilesystem(device, fsType, { mountpoint: target });
    } finally {
      await unmountAt(deps, target);
    }
    return;
  }
  await checkAndGrow(deps, device, fsType);
}

/** Mounts `target` and the bind mounts of a plan again; those already back are left as they are. */
export async function restoreMounts(deps: PipelineDeps, spec: MountSpec, plan: OfflinePlan): Promise<void> {
  await mountAt(deps, spec, plan.target);
  for (const b of plan.binds) {
    if (await deps.mounter.isMountPoint(b.mountPoint)) continue;
    await deps.mounter.mount(join(plan.target, b.sub), b.mountPoint, {
      options: ['bind', ...b.flags],
      timeoutMs: deps.timeouts.mountMs,
    });
  }
}

/** e2fsck then resize2fs, on a device nothing here has mounted (bind mounts keep it mounted too). */
async function checkAndGrow(deps: PipelineDeps, device: string, fsType: string): Promise<void> {
  await assertNotMounted(deps, device);
  await deps.mounter.checkFilesystem(device, fsType);
  await deps.mounter.growFilesystem(device, fsType);
  deps.log.info({ device, fsType }, 'filesystem grown offline');
}

/** IN_USE while any mount here shows the device's filesystem: by any name of it, or a bind mount. */
async function assertNotMounted(deps: PipelineDeps, device: string): Promise<void> {
  const still = await deps.mounter.mountsOfDevice(device);
  if (still.length > 0) {
    throw new StowageError(
      'IN_USE',
      `${device} is still mounted at ${still.map((m) => m.mountPoint).join(', ')}; its filesystem is checked and grown only when it is mounted nowhere`,
    );
  }
}

function flagsOf(m: MountEntry): string[] {
  return m.options.split(',').filter((o) => KEPT_FLAGS.has(o));
}
