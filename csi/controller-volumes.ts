import { isStowageError, StowageError } from '../src/base/errors.js';
import type { Driver } from '../src/core/driver.js';
import { validateVolumeName } from '../src/core/names.js';
import type { VolumeView } from '../src/core/volume-manager.js';
import { requireCapabilities, unsupportedReason } from './access.js';
import { type CsiContext, TOPOLOGY_HOST } from './context.js';
import { outOfRange, type Range, rangeOf } from './controller-capacity.js';
import { expandRpc } from './controller-expand.js';
import { afterName, page } from './controller-paging.js';
import { createOptions, driverOptionsOf } from './controller-parameters.js';
import { publishRpcs } from './controller-publish.js';
import { validation } from './controller-validate.js';
import { csiVolume } from './controller-view.js';
import type { ControllerPart, Rpcs } from './plugin.js';
import type { ControllerMethods, ControllerRpcType, Volume, VolumeStatus } from './proto/messages.js';
import { requireVolumeId, volumeNameFor } from './volume-ids.js';

/**
 * Volumes on the controller side: create, delete, list, get, validate; capacity (local), publish
 * (attach) and expansion (ebs) where the driver has them. Each RPC checks its request, calls one
 * VolumeManager method (or a driver's read-only capacity) and words the reply.
 */
export function controllerVolumes(ctx: CsiContext): ControllerPart {
  const driver = driverOf(ctx);
  const rpcs: Partial<Rpcs<ControllerMethods>> = {
    CreateVolume: async (req) => {
      const name = volumeNameFor(req.name);
      requireCapabilities(ctx.traits, req.volumeCapabilities);
      const range = rangeOf(req.capacityRange);
      const { options, sizeKnown } = createOptions(driver, ctx.traits, req, range, ctx.nodeId);
      // Whether the volume was there before, asked only when a volume made now could miss the
      // range (its size decided by the driver): then this call undoes what it made.
      const before = range && !sizeKnown ? await getOrUndefined(ctx, name) : undefined;
      const vol = await ctx.manager.create(ctx.driver, name, options).catch((err: unknown) => {
        // The size from the range is smaller than the source (an EBS snapshot): the spec's OUT_OF_RANGE.
        if (range && isStowageError(err) && err.details.belowSourceSize === true) {
          throw outOfRange(`capacity_range is too small for the source: ${err.message}`);
        }
        throw err;
      });
      const bytes = driver.sizing?.recordedBytes(vol);
      if (range && bytes !== undefined && !inRange(bytes, range)) {
        const outside = `${bytes} bytes, outside capacity_range [${range.required}, ${range.limit || 'unlimited'}]`;
        if (sizeKnown || before) {
          throw new StowageError(
            'CONFLICT',
            `volume ${name} already exists with ${outside}; use another name or remove it first`,
          );
        }
        await ctx.manager.remove(ctx.driver, name);
        throw outOfRange(
          `volume ${name} would have ${outside} (the size of its source): ask for at least that`,
        );
      }
      return { volume: csiVolume(ctx, driver, vol) };
    },

    DeleteVolume: async (req) => {
      if (!req.volumeId) throw new StowageError('INVALID_ARGUMENT', 'volume_id is missing');
      let name: string;
      try {
        name = validateVolumeName(req.volumeId);
      } catch {
        return {}; // no volume can have that id: already gone
      }
      await ctx.manager.remove(ctx.driver, name);
      return {};
    },

    ValidateVolumeCapabilities: validation(ctx, driver),

    ListVolumes: async (req) => {
      const after = afterName(req.startingToken);
      const names = (await ctx.manager.list(ctx.driver)).map((s) => s.name);
      const shown = page(names, after, req.maxEntries);
      const entries: { volume: Volume; status?: VolumeStatus }[] = [];
      for (const name of shown.names) {
        const view = await getOrUndefined(ctx, name); // removed since the listing: left out
        if (!view) continue;
        entries.push({
          volume: csiVolume(ctx, driver, view.volume),
          ...(ctx.traits.flexAttach ? { status: { publishedNodeIds: publishedNodes(view) } } : {}),
        });
      }
      return { entries, nextToken: shown.next ?? '' };
    },

    ControllerGetVolume: async (req) => {
      const view = await ctx.manager.get(ctx.driver, requireVolumeId(req.volumeId));
      return {
        volume: csiVolume(ctx, driver, view.volume),
        status: { publishedNodeIds: ctx.traits.flexAttach ? publishedNodes(view) : [] },
      };
    },
  };
  const capabilities: ControllerRpcType[] = [
    'CREATE_DELETE_VOLUME',
    'LIST_VOLUMES',
    'GET_VOLUME',
    'SINGLE_NODE_MULTI_WRITER',
  ];
  if (ctx.traits.flexAttach) {
    Object.assign(rpcs, publishRpcs(ctx));
    capabilities.push('PUBLISH_UNPUBLISH_VOLUME', 'LIST_VOLUMES_PUBLISHED_NODES');
  }
  if (driver.capacity) {
    const capacity = driver.capacity.bind(driver);
    rpcs.GetCapacity = async (req) => {
      const options = driver.parseOptions(driverOptionsOf(req.parameters)).values;
      const host = req.accessibleTopology?.segments[TOPOLOGY_HOST];
      const elsewhere = ctx.traits.hostLocal && host !== undefined && host !== ctx.nodeId;
      // Volumes that cannot be made here at all (another host's topology, a capability these
      // volumes cannot serve) have no capacity here.
      if (elsewhere || req.volumeCapabilities.some((c) => unsupportedReason(ctx.traits, c))) {
        return { availableCapacity: 0 };
      }
      const c = await capacity(options);
      return {
        availableCapacity: c.availableBytes,
        maximumVolumeSize: { value: c.maximumVolumeBytes },
        minimumVolumeSize: { value: c.minimumVolumeBytes },
      };
    };
    capabilities.push('GET_CAPACITY');
  }
  if (driver.expand && driver.sizing) {
    rpcs.ControllerExpandVolume = expandRpc(ctx, driver.sizing);
    capabilities.push('EXPAND_VOLUME');
  }
  return { rpcs, capabilities };
}

/** The driver object this plugin serves: its option parsing, sizing and capacity are pure reads. */
function driverOf(ctx: CsiContext): Driver {
  const driver = ctx.manager.drivers().find((d) => d.name === ctx.driver);
  if (!driver) throw new StowageError('INTERNAL', `driver ${ctx.driver} is not enabled in this runtime`);
  return driver;
}

/** The node ids (host ids) the volume is attached to. */
function publishedNodes(view: VolumeView): string[] {
  return view.attachments.filter((a) => a.state === 'attached').map((a) => a.host);
}

function inRange(bytes: number, range: Range): boolean {
  return bytes >= range.required && (range.limit === 0 || bytes <= range.limit);
}

async function getOrUndefined(ctx: CsiContext, name: string): Promise<VolumeView | undefined> {
  try {
    return await ctx.manager.get(ctx.driver, name);
  } catch (err) {
    if (isStowageError(err, 'NOT_FOUND')) return undefined;
    throw err;
  }
}
