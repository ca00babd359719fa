/**
 * What each driver tells kubelet at `init`, without loading the driver (init runs at every probe).
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

export const FLEX_DRIVERS: Record<string, FlexDriverTraits> = {
  ebs: { attach: true, fsGroup: true, requiresFSResize: true, blockFs: true },
  local: { attach: false, fsGroup: true, requiresFSResize: false, blockFs: true },
  nfs: { attach: false, fsGroup: false, requiresFSResize: false, blockFs: false },
  efs: { attach: false, fsGroup: false, requiresFSResize: false, blockFs: false },
};

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
