import { StowageError } from '../src/base/errors.js';
import type { Driver } from '../src/core/driver.js';
import { unsupportedReason } from './access.js';
import type { CsiContext } from './context.js';
import { driverOptionsOf } from './controller-parameters.js';
import { CONTEXT_DRIVER } from './controller-view.js';
import type { Rpc } from './handler.js';
import type {
  ValidateVolumeCapabilitiesRequest,
  ValidateVolumeCapabilitiesResponse,
  VolumeCapability,
  VolumeCapabilityOut,
} from './proto/messages.js';
import { requireVolumeId } from './volume-ids.js';

/**
 * ValidateVolumeCapabilities: whether an existing volume (a pre-provisioned PV) serves what the CO
 * asks. Confirmed, echoing what was asked, only when every capability is served, the filesystem
 * asked for is the volume's, the volume context is the one CreateVolume gave and the parameters
 * are options of this driver; otherwise no confirmation, and `message` says why.
 */
export function validation(
  ctx: CsiContext,
  driver: Driver,
): Rpc<ValidateVolumeCapabilitiesRequest, ValidateVolumeCapabilitiesResponse> {
  return async (req) => {
    const name = requireVolumeId(req.volumeId);
    if (req.volumeCapabilities.length === 0) {
      throw new StowageError('INVALID_ARGUMENT', 'volume_capabilities is missing: give at least one');
    }
    const { volume } = await ctx.manager.get(ctx.driver, name);
    const why: string[] = [];
    for (const cap of req.volumeCapabilities) {
      const reason = unsupportedReason(ctx.traits, cap);
      if (reason) why.push(reason);
      const fsType = cap.mount?.fsType;
      if (ctx.traits.blockFs && fsType && volume.options.fsType !== fsType) {
        why.push(`the volume's filesystem is ${String(volume.options.fsType)}, not ${fsType}`);
      }
    }
    const context: Record<string, string> = { [CONTEXT_DRIVER]: volume.driver };
    for (const [k, v] of Object.entries(req.volumeContext)) {
      if (context[k] !== v) why.push(`volume_context ${k}=${JSON.stringify(v)} is not this volume's`);
    }
    try {
      driver.parseOptions(driverOptionsOf(req.parameters));
    } catch (err) {
      why.push(`parameters: ${(err as Error).message}`);
    }
    if (why.length > 0) return { message: why.join('; ') };
    return {
      confirmed: {
        volumeContext: req.volumeContext,
        volumeCapabilities: req.volumeCapabilities.map(echo),
        parameters: req.parameters,
        mutableParameters: req.mutableParameters,
      },
    };
  };
}

/** A capability as received, as it is sent back (without proto-loader's oneof naming field). */
function echo(cap: VolumeCapability): VolumeCapabilityOut {
  const accessMode =
    cap.accessMode && typeof cap.accessMode.mode === 'string' ? { mode: cap.accessMode.mode } : null;
  if (cap.accessType === 'mount') return { accessMode, mount: { ...cap.mount } };
  if (cap.accessType === 'block') return { accessMode, block: {} };
  return { accessMode };
}
