import { isAbsolute, normalize } from 'node:path';
import type { DriverTraits } from '../drivers/catalog.js';
import { StowageError } from '../src/base/errors.js';
import { isPublishRef, stageMountId } from '../src/core/mount-ids.js';
import type { VolumeView } from '../src/core/volume-manager.js';
import { isReadOnlyMode, supportedModes, unsupportedReason } from './access.js';
import { failedPrecondition } from './handler.js';
import type { AccessModeName, VolumeCapability } from './proto/messages.js';

/**
 * The checks of the node service's requests, before anything is touched: paths inside kubelet's
 * directory, the capability the volume is used with, its filesystem type and mount group.
 */

/**
 * A staging or target path: absolute, normalized and strictly inside kubelet's directory, since
 * stowage mounts there as root. INVALID_ARGUMENT otherwise (`what` names the request field).
 */
export function requireKubeletPath(kubeletDir: string, path: string | undefined, what: string): string {
  if (!path) throw new StowageError('INVALID_ARGUMENT', `${what} is missing`);
  const inside = insideKubeletDir(kubeletDir, path);
  if (!inside) {
    throw new StowageError(
      'INVALID_ARGUMENT',
      `${what} ${JSON.stringify(path.slice(0, 300))} is not a normalized absolute path inside kubelet's directory ${kubeletDir}; ` +
        'if kubelet runs with another --root-dir, start the plugin with the same --kubelet-dir',
    );
  }
  return inside;
}

/** The path without a trailing slash when it is a clean absolute path under kubeletDir, else undefined. */
export function insideKubeletDir(kubeletDir: string, path: string): string | undefined {
  const clean = path.length > 1 ? path.replace(/\/+$/, '') : path;
  if (!isAbsolute(clean) || normalize(clean) !== clean) return undefined;
  const root = kubeletDir.replace(/\/+$/, '');
  return clean.startsWith(`${root}/`) ? clean : undefined;
}

/** What a node RPC does with a capability: mount read-only or not, extra bind flags, the group. */
export interface NodeUse {
  readOnly: boolean;
  flags: string[];
  group?: number;
  fsType: string;
}

/**
 * The volume capability of a NodeStage or NodePublish. Missing or malformed, or the block access
 * type: INVALID_ARGUMENT. A multi-node mode for a driver whose volumes are used by one node at a
 * time: FAILED_PRECONDITION, the spec's "exceeds capabilities".
 */
export function requireNodeUse(
  driver: string,
  traits: DriverTraits,
  cap: VolumeCapability | null | undefined,
): NodeUse {
  if (!cap) throw new StowageError('INVALID_ARGUMENT', 'volume_capability is missing');
  const mode = cap.accessMode?.mode;
  if (typeof mode === 'string' && mode.startsWith('MULTI_NODE') && !supportedModes(traits).includes(mode)) {
    throw failedPrecondition(
      `access mode ${mode} exceeds what ${driver} volumes allow: they are used by one node at a time (${supportedModes(traits).join(', ')})`,
    );
  }
  const why = unsupportedReason(traits, cap);
  if (why || cap.accessType !== 'mount') {
    throw new StowageError('INVALID_ARGUMENT', `volume_capability: ${why ?? 'mount access type expected'}`);
  }
  const mountFlags = cap.mount.mountFlags ?? [];
  const flags = mountFlags.filter((f) => f !== 'ro' && f !== 'rw');
  const readOnly = isReadOnlyMode(cap) || mountFlags.includes('ro');
  if (readOnly && mountFlags.includes('rw')) {
    throw new StowageError('INVALID_ARGUMENT', 'mount_flags ask for both ro and rw');
  }
  const group = mountGroup(driver, traits, cap.mount.volumeMountGroup ?? '');
  return { readOnly, flags, fsType: cap.mount.fsType ?? '', ...(group === undefined ? {} : { group }) };
}

/** The mode of a capability, when it names a known one. */
export function modeOf(cap: VolumeCapability | null | undefined): AccessModeName | undefined {
  const mode = cap?.accessMode?.mode;
  return typeof mode === 'string' ? mode : undefined;
}

/**
 * volume_mount_group: a numeric gid, for drivers whose volumes a pod's fsGroup may own (fsGroup
 * trait: local, ebs). A network share is not regrouped for one pod: pods on other hosts would
 * fight over its root directory, and a root-squashing server refuses it anyway.
 */
function mountGroup(driver: string, traits: DriverTraits, group: string): number | undefined {
  if (group === '') return undefined;
  if (!traits.fsGroup) {
    throw new StowageError(
      'INVALID_ARGUMENT',
      `volume_mount_group is not supported for ${driver} volumes (the plugin does not advertise VOLUME_MOUNT_GROUP): ` +
        "a shared filesystem's directory is not regrouped for one pod; set the CSIDriver's fsGroupPolicy to None",
    );
  }
  if (!/^\d{1,10}$/.test(group) || Number(group) > 0xffffffff) {
    throw new StowageError(
      'INVALID_ARGUMENT',
      `volume_mount_group ${JSON.stringify(group.slice(0, 40))} is not a numeric group id`,
    );
  }
  return Number(group);
}

/** The filesystem types a network driver's volumes can be asked for by (fs_type), besides none. */
const NETWORK_FS_TYPES = new Set(['nfs', 'nfs4']);

/**
 * fs_type, when the CO gives one, must be what the volume is: the filesystem stowage formats it
 * with (local, ebs: the fsType option at create) or a network filesystem's (nfs, efs). A volume is
 * never reformatted to match, so a mismatch is INVALID_ARGUMENT, nothing done.
 */
export function checkFsType(
  driver: string,
  traits: DriverTraits,
  vol: VolumeView['volume'],
  fsType: string,
): void {
  if (fsType === '') return;
  if (traits.blockFs) {
    const recorded = String(vol.options.fsType ?? '');
    if (fsType === recorded) return;
    throw new StowageError(
      'INVALID_ARGUMENT',
      `fs_type ${JSON.stringify(fsType)} does not match volume ${vol.name}, which is ${recorded}: ` +
        'stowage does not reformat a volume; ask for its own type (or none)',
    );
  }
  if (NETWORK_FS_TYPES.has(fsType) || fsType === driver) return;
  throw new StowageError(
    'INVALID_ARGUMENT',
    `fs_type ${JSON.stringify(fsType)} does not fit a ${driver} volume, a network filesystem: give nfs, nfs4 or none`,
  );
}

/** This host's counts of the volume (mount id → count), empty when it is not mounted here. */
function refsHere(view: VolumeView, host: string): Readonly<Record<string, number>> {
  return view.mounts.find((m) => m.host === host)?.refs ?? {};
}

/**
 * NodePublish of a plugin that stages: the volume must be staged at `staging` on this node, else
 * FAILED_PRECONDITION (the CO stages first).
 */
export function requireStagedHere(view: VolumeView, host: string, staging: string): void {
  if ((refsHere(view, host)[stageMountId(staging)] ?? 0) > 0) return;
  throw failedPrecondition(
    `volume ${view.volume.name} is not staged at ${staging} on this node; NodeStageVolume it there first`,
  );
}

/**
 * SINGLE_NODE_SINGLE_WRITER (Kubernetes' ReadWriteOncePod): no other pod may publish the volume on
 * this node (its stage and Docker containers are not pods). FAILED_PRECONDITION, the spec's answer
 * to a second target of a volume without multi-node capability.
 */
export function requireSoleWriter(view: VolumeView, host: string, id: string): void {
  const others = Object.keys(refsHere(view, host)).filter((other) => isPublishRef(other) && other !== id);
  if (others.length === 0) return;
  throw failedPrecondition(
    `volume ${view.volume.name} is asked for with SINGLE_NODE_SINGLE_WRITER (ReadWriteOncePod), but it is already ` +
      `published on this node for ${others.length} other pod${others.length === 1 ? '' : 's'}; unpublish ${others.length === 1 ? 'it' : 'them'} first`,
  );
}
