import { isStowageError, StowageError } from '../src/base/errors.js';
import type { VolumeSnapshot } from '../src/core/driver.js';
import { INVALID_PAGE_TOKEN } from '../src/core/volume-snapshots.js';
import type { CsiContext } from './context.js';
import type { ControllerPart } from './plugin.js';
import type { Snapshot } from './proto/messages.js';
import { requireVolumeId } from './volume-ids.js';

/** Parameters the CO itself adds (external-snapshotter's `csi.storage.k8s.io/…`): accepted, unused. */
const CO_PARAMETER = /^csi\.storage\.k8s\.io\//;

/**
 * Snapshots on the controller side, for a driver that takes them (ebs): CreateSnapshot,
 * DeleteSnapshot, ListSnapshots and GetSnapshot over VolumeManager.snapshots. snapshot_id is the
 * storage's id (EBS: snap-…), source_volume_id the stowage volume name. A driver without
 * snapshots advertises none of these, and they answer UNIMPLEMENTED.
 */
export function controllerSnapshots(ctx: CsiContext): ControllerPart {
  const offered = ctx.manager.drivers().some((d) => d.name === ctx.driver && d.snapshots !== undefined);
  if (!offered) return { rpcs: {}, capabilities: [] };
  const snapshots = ctx.manager.snapshots;
  return {
    capabilities: ['CREATE_DELETE_SNAPSHOT', 'LIST_SNAPSHOTS', 'GET_SNAPSHOT'],
    rpcs: {
      CreateSnapshot: async (req) => {
        const volume = requireVolumeId(req.sourceVolumeId, 'source_volume_id');
        if (!req.name) {
          throw new StowageError(
            'INVALID_ARGUMENT',
            'name is missing: CreateSnapshot needs the snapshot name',
          );
        }
        refuseUnknownParameters(req.parameters);
        return { snapshot: toCsi(await snapshots.create(ctx.driver, volume, req.name)) };
      },
      DeleteSnapshot: async (req) => {
        await snapshots.delete(ctx.driver, requireSnapshotId(req.snapshotId));
        return {};
      },
      GetSnapshot: async (req) => ({
        snapshot: toCsi(await snapshots.get(ctx.driver, requireSnapshotId(req.snapshotId))),
      }),
      ListSnapshots: async (req) => {
        if (req.maxEntries < 0) {
          throw new StowageError(
            'INVALID_ARGUMENT',
            `max_entries ${req.maxEntries} is negative: give 0 (all) or more`,
          );
        }
        const filter: { volume?: string; id?: string } = {};
        if (req.snapshotId) filter.id = req.snapshotId;
        if (req.sourceVolumeId) {
          // A name no stowage volume can have has no snapshots: an empty list, as for any unknown id.
          try {
            filter.volume = requireVolumeId(req.sourceVolumeId, 'source_volume_id');
          } catch {
            return { entries: [] };
          }
        }
        const page = await snapshots
          .list(ctx.driver, filter, { max: req.maxEntries, startingToken: req.startingToken })
          .catch(tokenAborted);
        return {
          entries: page.snapshots.map((s) => ({ snapshot: toCsi(s) })),
          ...(page.nextToken === undefined ? {} : { nextToken: page.nextToken }),
        };
      },
    },
  };
}

function requireSnapshotId(id: string | undefined): string {
  if (!id) throw new StowageError('INVALID_ARGUMENT', 'snapshot_id is missing');
  return id;
}

/** No parameter changes what a snapshot is yet: one we do not know is a mistake worth saying so. */
function refuseUnknownParameters(parameters: Record<string, string> | undefined): void {
  const unknown = Object.keys(parameters ?? {}).filter((k) => !CO_PARAMETER.test(k));
  if (unknown.length > 0) {
    throw new StowageError(
      'INVALID_ARGUMENT',
      `unknown snapshot parameter${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')}: the VolumeSnapshotClass takes none; remove ${unknown.length > 1 ? 'them' : 'it'}`,
    );
  }
}

/** The spec's answer to a starting_token this plugin did not hand out: ABORTED (the core's BUSY). */
function tokenAborted(err: unknown): never {
  if (isStowageError(err, 'INVALID_ARGUMENT') && err.details.reason === INVALID_PAGE_TOKEN) {
    throw new StowageError('BUSY', err.message, { cause: err });
  }
  throw err;
}

function toCsi(s: VolumeSnapshot): Snapshot {
  const ms = s.createdAt.getTime();
  return {
    snapshotId: s.id,
    sourceVolumeId: s.volume ?? '',
    creationTime: { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 },
    sizeBytes: String(s.sizeBytes),
    readyToUse: s.state === 'complete',
  };
}
