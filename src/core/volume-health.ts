import type { FileOps, FsUsage } from '../mount/file-ops.js';
import type { Mounter } from '../mount/mounter.js';
import type { MountRecord, VolumeRecord } from '../state/store.js';
import type { Timeouts } from './driver.js';
import { unmountDeadlineMs } from './mount-pipeline.js';

/**
 * How a volume looks at one path where it is published on this host: its filesystem's usage, and
 * whether the kernel and the store still agree that it is mounted (CSI's volume condition). The
 * condition is an answer, never an error: a kubelet asking about a broken volume is told it is
 * broken and why, and decides what to do.
 */
export interface VolumeHealth {
  /** Absent when the filesystem could not be asked (not mounted, or it did not answer). */
  usage?: FsUsage;
  abnormal: boolean;
  message: string;
}

export interface HealthDeps {
  mounter: Mounter;
  files: FileOps;
  timeouts: Timeouts;
}

/** `here` is this host's mount record of `vol`, which counts a user at `path`. */
export async function volumeHealth(
  d: HealthDeps,
  vol: VolumeRecord,
  here: MountRecord,
  path: string,
): Promise<VolumeHealth> {
  if (vol.status !== 'ready') {
    return { abnormal: true, message: `volume ${vol.name} is ${vol.status} in the store` };
  }
  if (here.state !== 'mounted') {
    return { abnormal: true, message: `the store records the volume's mount on this host as ${here.state}` };
  }
  // Asked before any stat: a path whose mount is gone may show another filesystem underneath.
  if (!(await d.mounter.isMountPoint(here.mountpoint))) {
    return {
      abnormal: true,
      message: `the volume is no longer mounted at ${here.mountpoint}, though the store says it is (unmounted outside stowage?); unpublish and publish it again`,
    };
  }
  if (!(await d.mounter.isMountPoint(path))) {
    return {
      abnormal: true,
      message: `nothing is mounted at ${path} any more; unpublish and publish it again`,
    };
  }
  try {
    const usage = await d.files.usage(path, unmountDeadlineMs(vol, d.timeouts));
    return { usage, abnormal: false, message: 'mounted' };
  } catch (err) {
    return { abnormal: true, message: `the filesystem at ${path} did not answer: ${(err as Error).message}` };
  }
}
