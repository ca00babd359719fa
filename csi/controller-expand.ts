import { StowageError } from '../src/base/errors.js';
import type { VolumeSizing } from '../src/core/driver.js';
import { requireCapabilities } from './access.js';
import type { CsiContext } from './context.js';
import { outOfRange, rangeOf } from './controller-capacity.js';
import type { Rpc } from './handler.js';
import type { ControllerExpandVolumeRequest, ControllerExpandVolumeResponse } from './proto/messages.js';
import { requireVolumeId } from './volume-ids.js';

/**
 * ControllerExpandVolume (ebs): grows the volume's storage to the required bytes rounded up to
 * the driver's step (EBS: whole GiB) through VolumeManager.expand, which never shrinks and is
 * idempotent; the node then grows the filesystem (node_expansion_required). A limit below the
 * size the volume would have (or already has) is OUT_OF_RANGE, as the spec says.
 */
export function expandRpc(
  ctx: CsiContext,
  sizing: VolumeSizing,
): Rpc<ControllerExpandVolumeRequest, ControllerExpandVolumeResponse> {
  return async (req) => {
    const name = requireVolumeId(req.volumeId);
    const range = rangeOf(req.capacityRange);
    if (!range) throw new StowageError('INVALID_ARGUMENT', 'capacity_range is missing: give the new size');
    if (req.volumeCapability) requireCapabilities(ctx.traits, [req.volumeCapability], 'volume_capability');
    const { volume } = await ctx.manager.get(ctx.driver, name);
    const current = sizing.recordedBytes(volume) ?? 0;
    const wanted = Math.max(Math.ceil(range.required / sizing.stepBytes) * sizing.stepBytes, current);
    if (range.limit > 0 && wanted > range.limit) {
      throw outOfRange(
        `volume ${name} would be ${wanted} bytes (it has ${current}; sizes go in steps of ${sizing.stepBytes}), above limit_bytes ${range.limit}: volumes are never shrunk`,
      );
    }
    if (wanted > sizing.maxBytes) {
      throw outOfRange(
        `${wanted} bytes is more than the largest volume this driver makes (${sizing.maxBytes})`,
      );
    }
    const { sizeBytes } = await ctx.manager.expand(ctx.driver, name, wanted);
    return { capacityBytes: sizeBytes, nodeExpansionRequired: true };
  };
}
