import { StowageError } from '../src/base/errors.js';
import { csiPublishMountId, stageMountId } from '../src/core/mount-ids.js';
import { validateVolumeName } from '../src/core/names.js';
import type { CsiContext } from './context.js';
import { failedPrecondition } from './handler.js';
import {
  checkFsType,
  insideKubeletDir,
  modeOf,
  requireKubeletPath,
  requireNodeUse,
  requireSoleWriter,
  requireStagedHere,
} from './node-checks.js';
import type { Rpcs } from './plugin.js';
import type { NodeGetVolumeStatsResponse, NodeMethods, NodeRpcType } from './proto/messages.js';
import { requireVolumeId } from './volume-ids.js';

/**
 * The node service: stage, publish, their undoing, stats, expansion, the node's identity. Each
 * RPC checks its request, then calls one VolumeManager method: NodeStage mounts the volume once
 * under stowage's mount root (counted under the staging path's id, like any Docker mount) and
 * binds it at the staging path; NodePublish binds it at the pod's target, counted under the pod's
 * id. So Docker containers, flexvolume pods and CSI pods on one host share one mount whose counts
 * add up, and none of them unmounts another's.
 */
export function nodeService(ctx: CsiContext): Partial<Rpcs<NodeMethods>> {
  const { manager, driver, traits } = ctx;
  const rpcs: Partial<Rpcs<NodeMethods>> = {
    NodeGetCapabilities: async () => ({
      capabilities: nodeCapabilities(ctx).map((type) => ({ rpc: { type } })),
    }),

    NodeGetInfo: async () => {
      const segments = await ctx.nodeTopology();
      return {
        nodeId: ctx.nodeId,
        // No limit is claimed: EBS's per-instance limit depends on the instance type and on the
        // network interfaces sharing its slots, which this process does not know reliably.
        maxVolumesPerNode: 0,
        ...(segments ? { accessibleTopology: { segments } } : {}),
      };
    },

    NodeStageVolume: async (req) => {
      const volume = requireVolumeId(req.volumeId);
      const staging = requireKubeletPath(ctx.kubeletDir, req.stagingTargetPath, 'staging_target_path');
      const use = requireNodeUse(driver, traits, req.volumeCapability);
      checkFsType(driver, traits, (await manager.get(driver, volume)).volume, use.fsType);
      // For ebs the controller attached the volume (ControllerPublish); if it did not, the core's
      // mount path attaches it here, as it does for Docker.
      await manager.publish({ driver, volume, id: stageMountId(staging), target: staging, flags: use.flags });
      return {};
    },

    NodeUnstageVolume: async (req) => {
      if (!req.volumeId) throw new StowageError('INVALID_ARGUMENT', 'volume_id is missing');
      const staging = requireKubeletPath(ctx.kubeletDir, req.stagingTargetPath, 'staging_target_path');
      // Not staged (or already unstaged) is success. The volume stays mounted under stowage's
      // mount root while anything else (a pod, a container) still counts it. Another volume
      // staged at the path is left alone: the one named is not staged there.
      await manager.unpublish(stageMountId(staging), staging, { volume: namedVolume(req.volumeId) });
      return {};
    },

    NodePublishVolume: async (req) => {
      const volume = requireVolumeId(req.volumeId);
      const target = requireKubeletPath(ctx.kubeletDir, req.targetPath, 'target_path');
      const use = requireNodeUse(driver, traits, req.volumeCapability);
      if (!req.stagingTargetPath) {
        throw failedPrecondition(
          'staging_target_path is missing: this plugin stages volumes (STAGE_UNSTAGE_VOLUME); NodeStageVolume first',
        );
      }
      const staging = requireKubeletPath(ctx.kubeletDir, req.stagingTargetPath, 'staging_target_path');
      const view = await manager.get(driver, volume);
      checkFsType(driver, traits, view.volume, use.fsType);
      requireStagedHere(view, manager.host, staging);
      const id = csiPublishMountId(target);
      if (modeOf(req.volumeCapability) === 'SINGLE_NODE_SINGLE_WRITER')
        requireSoleWriter(view, manager.host, id);
      await manager.publish({
        driver,
        volume,
        id,
        target,
        readOnly: req.readonly === true || use.readOnly,
        flags: use.flags,
        ...(use.group === undefined ? {} : { group: use.group }),
      });
      return {};
    },

    NodeUnpublishVolume: async (req) => {
      if (!req.volumeId) throw new StowageError('INVALID_ARGUMENT', 'volume_id is missing');
      const target = requireKubeletPath(ctx.kubeletDir, req.targetPath, 'target_path');
      // Not published is success; the target directory this plugin made goes too (the spec).
      // Another volume published at the target is left alone: the one named is not published there.
      await manager.unpublish(csiPublishMountId(target), target, {
        removeTarget: true,
        volume: namedVolume(req.volumeId),
      });
      return {};
    },

    NodeGetVolumeStats: async (req) => {
      const volume = requireVolumeId(req.volumeId);
      if (!req.volumePath) throw new StowageError('INVALID_ARGUMENT', 'volume_path is missing');
      const path = insideKubeletDir(ctx.kubeletDir, req.volumePath);
      if (!path) {
        throw new StowageError(
          'NOT_FOUND',
          `volume ${volume} is not published at ${req.volumePath.slice(0, 300)}`,
        );
      }
      // A published target or a staging path: kubelet asks about either.
      const health = await manager.healthAt(driver, volume, path, [
        csiPublishMountId(path),
        stageMountId(path),
      ]);
      const res: NodeGetVolumeStatsResponse = {
        volumeCondition: { abnormal: health.abnormal, message: health.message },
      };
      const u = health.usage;
      if (u) {
        res.usage = [
          { unit: 'BYTES', total: u.totalBytes, used: u.usedBytes, available: u.availableBytes },
          { unit: 'INODES', total: u.totalInodes, used: u.usedInodes, available: u.availableInodes },
        ];
      }
      return res;
    },
  };
  if (traits.requiresFSResize) {
    rpcs.NodeExpandVolume = async (req) => {
      const volume = requireVolumeId(req.volumeId);
      if (!req.volumePath) throw new StowageError('INVALID_ARGUMENT', 'volume_path is missing');
      if (req.volumeCapability) requireNodeUse(driver, traits, req.volumeCapability);
      const required = bytesOf(req.capacityRange?.requiredBytes, 'capacity_range.required_bytes');
      const limit = bytesOf(req.capacityRange?.limitBytes, 'capacity_range.limit_bytes');
      if (required > 0 && limit > 0 && required > limit) {
        throw new StowageError(
          'INVALID_ARGUMENT',
          `required_bytes ${required} is more than limit_bytes ${limit}`,
        );
      }
      const path = insideKubeletDir(ctx.kubeletDir, req.volumePath);
      if (!path) {
        throw new StowageError(
          'NOT_FOUND',
          `volume ${volume} is not published at ${req.volumePath.slice(0, 300)}`,
        );
      }
      const ids = [csiPublishMountId(path), stageMountId(path)];
      await manager.healthAt(driver, volume, path, ids); // NOT_FOUND when not published there
      await manager.growFilesystem(driver, volume, required > 0 ? { minDeviceBytes: required } : {});
      const after = await manager.healthAt(driver, volume, path, ids);
      return after.usage ? { capacityBytes: after.usage.totalBytes } : {};
    };
  }
  return rpcs;
}

/** What NodeGetCapabilities advertises for the driver: the RPCs this service serves for it. */
export function nodeCapabilities(ctx: Pick<CsiContext, 'traits'>): NodeRpcType[] {
  const caps: NodeRpcType[] = [
    'STAGE_UNSTAGE_VOLUME',
    'GET_VOLUME_STATS',
    'VOLUME_CONDITION',
    'SINGLE_NODE_MULTI_WRITER',
  ];
  if (ctx.traits.fsGroup) caps.push('VOLUME_MOUNT_GROUP');
  if (ctx.traits.requiresFSResize) caps.push('EXPAND_VOLUME');
  return caps;
}

/**
 * The stowage volume a NodeUnpublish or NodeUnstage names. An id that is no stowage name names no
 * volume, so it is guarded with a name no volume can have: whatever is at the path is not its.
 */
function namedVolume(id: string): string {
  try {
    return validateVolumeName(id);
  } catch {
    return '';
  }
}

/** An int64 of a request (a string, as proto-loader delivers it), 0 when unset. */
function bytesOf(value: string | undefined, what: string): number {
  if (value === undefined || value === '' || value === '0') return 0;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new StowageError('INVALID_ARGUMENT', `${what} ${JSON.stringify(value)} is not a byte count`);
  }
  return n;
}
