import type { Driver } from '../src/core/driver.js';
import type { VolumeRecord } from '../src/index.js';
import type { CsiContext } from './context.js';
import { volumeTopology } from './controller-topology.js';
import type { Volume } from './proto/messages.js';

/** The volume context stowage hands the CO: small and without secrets (the node reads the store). */
export const CONTEXT_DRIVER = 'stowage.io/driver';

/** A stowage volume as CSI's Volume message. */
export function csiVolume(ctx: CsiContext, driver: Driver, vol: VolumeRecord): Volume {
  const snapshotId = vol.options.snapshotId;
  return {
    volumeId: vol.name,
    // 0: unknown (a share's size is the server's business).
    capacityBytes: driver.sizing?.recordedBytes(vol) ?? 0,
    volumeContext: { [CONTEXT_DRIVER]: vol.driver },
    accessibleTopology: volumeTopology(ctx.traits, driver.describe(vol), ctx.nodeId),
    ...(typeof snapshotId === 'string' ? { contentSource: { snapshot: { snapshotId } } } : {}),
  };
}
