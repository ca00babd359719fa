import { DRIVER_NAMES, DRIVER_TRAITS } from '../drivers/catalog.js';

/**
 * What each driver tells kubelet at `init`, taken from the driver catalog's traits without loading
 * the driver (init runs at every probe).
 * - attach: only EBS goes through the controller-manager's attach/detach; local images are attached
 *   (as loop devices) by the node itself at mount, NFS and EFS need nothing attached.
 * - fsGroup: false for network filesystems, where kubelet's recursive chown would walk a whole
 *   share and fight other clients.
 * - blockFs: the driver formats a block device, so kubernetes.io/fsType maps to its fsType option.
 */
export interface FlexDriverTraits {
  attach: boolean;
  fsGroup: boolean;
  requiresFSResize: boolean;
  blockFs: boolean;
}

export const FLEX_DRIVERS: Record<string, FlexDriverTraits> = Object.fromEntries(
  DRIVER_NAMES.map((name) => {
    const t = DRIVER_TRAITS[name];
    return [
      name,
      { attach: t.flexAttach, fsGroup: t.fsGroup, requiresFSResize: t.requiresFSResize, blockFs: t.blockFs },
    ];
  }),
);

/** The vendor part of `driver: stowage/ebs` and of the plugin directory `stowage~ebs`. */
export const VENDOR = 'stowage';

export function initCapabilities(traits: FlexDriverTraits): Record<string, boolean> {
  return {
    attach: traits.attach,
    fsGroup: traits.fsGroup,
    requiresFSResize: traits.requiresFSResize,
    selinuxRelabel: true,
    supportsMetrics: false,
  };
}
