import { isStowageError, StowageError } from '../src/base/errors.js';
import type { AttachTarget } from '../src/core/driver.js';
import { validateVolumeName } from '../src/core/names.js';
import { requireCapabilities } from './access.js';
import type { CsiContext } from './context.js';
import type { Rpcs } from './plugin.js';
import type { ControllerMethods } from './proto/messages.js';
import { requireVolumeId } from './volume-ids.js';

/** The publish context key NodeStage finds the attachment's device name under. */
export const PUBLISH_DEVICE_PATH = 'devicePath';

/**
 * ControllerPublish/Unpublish: attaching a block volume (ebs) to a node and detaching it, through
 * the core's arbitration (one host at a time; detach refused while that host mounts the volume).
 * The node id is the host id NodeGetInfo reports. Every single-node access mode is served by the
 * same attachment, so a repeated publish to the same node answers the same context whatever mode
 * it names; read-only is applied where the volume is mounted (NodePublish), not at attach, so
 * PUBLISH_READONLY is not advertised and `readonly` changes nothing here.
 */
export function publishRpcs(
  ctx: CsiContext,
): Pick<Rpcs<ControllerMethods>, 'ControllerPublishVolume' | 'ControllerUnpublishVolume'> {
  return {
    ControllerPublishVolume: async (req) => {
      const name = requireVolumeId(req.volumeId);
      if (!req.nodeId) throw new StowageError('INVALID_ARGUMENT', 'node_id is missing');
      requireCapabilities(
        ctx.traits,
        req.volumeCapability ? [req.volumeCapability] : [],
        'volume_capability',
      );
      await ctx.manager.get(ctx.driver, name); // NOT_FOUND before the node is looked up
      const target = await nodeOf(ctx, req.nodeId);
      if (!target)
        throw new StowageError(
          'NOT_FOUND',
          `node ${JSON.stringify(req.nodeId.slice(0, 130))} does not exist`,
        );
      // Attached to another node: the core's IN_USE (FAILED_PRECONDITION), naming that host.
      const device = await ctx.manager.attach(ctx.driver, name, target);
      return { publishContext: { [PUBLISH_DEVICE_PATH]: device } };
    },

    ControllerUnpublishVolume: async (req) => {
      if (!req.volumeId) throw new StowageError('INVALID_ARGUMENT', 'volume_id is missing');
      let name: string;
      try {
        name = validateVolumeName(req.volumeId);
      } catch {
        return {}; // no volume has that id: it is published nowhere
      }
      let attachments: { host: string }[];
      try {
        attachments = (await ctx.manager.get(ctx.driver, name)).attachments;
      } catch (err) {
        if (isStowageError(err, 'NOT_FOUND')) return {};
        throw err;
      }
      const nodes = req.nodeId ? [req.nodeId] : [...new Set(attachments.map((a) => a.host))];
      for (const node of nodes) {
        const target = await nodeOf(ctx, node);
        if (!target) {
          // A node stowage does not know: unpublished from it unless an attachment names it.
          if (!attachments.some((a) => a.host === node)) continue;
          throw new StowageError(
            'NOT_FOUND',
            `node ${node} is not a registered host, but volume ${name} is recorded as attached to it: register the host (or run stowage there) to detach it`,
          );
        }
        // Refused while that host mounts it (IN_USE: FAILED_PRECONDITION); not attached is success.
        await ctx.manager.detach(ctx.driver, name, target);
      }
      return {};
    },
  };
}

/** The host behind a node id, or undefined when no host or cloud instance answers to it. */
async function nodeOf(ctx: CsiContext, nodeId: string): Promise<AttachTarget | undefined> {
  try {
    return await ctx.hosts.resolveNode(nodeId);
  } catch (err) {
    if (isStowageError(err, 'NOT_FOUND') || isStowageError(err, 'INVALID_ARGUMENT')) return undefined;
    throw err;
  }
}
