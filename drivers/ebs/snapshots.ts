import type { Ec2Api, Ec2Snapshot, SnapshotOps, VolumeRecord, VolumeSnapshot } from '../../src/index.js';
import { StowageError } from '../../src/index.js';

/** The name a snapshot was taken under: what makes it stowage's, and finds it again. */
export const SNAPSHOT_NAME_TAG = 'stowage.io/snapshot-name';
/** The stowage volume a snapshot was taken of (the EC2 volume id changes if the volume is made again). */
export const SNAPSHOT_VOLUME_TAG = 'stowage.io/volume';

const GiB = 1024 ** 3;
const SNAPSHOT_ID = /^snap-[0-9a-f]{8,17}$/;

/**
 * EBS snapshots through the EC2 seam. Each carries its name and its volume's name as tags (and
 * `Name`, so `-o snapshotTag=<name>` finds it from the Docker door), which is all the core needs
 * to find it again: no store record.
 */
export class EbsSnapshots implements SnapshotOps {
  constructor(private readonly ec2: Ec2Api) {}

  sourceIdOf(volume: VolumeRecord): string | undefined {
    const id = volume.fields.volumeId;
    return typeof id === 'string' ? id : undefined;
  }

  async create(volume: VolumeRecord, name: string): Promise<VolumeSnapshot> {
    const volumeId = this.sourceIdOf(volume);
    if (volumeId === undefined) {
      throw new StowageError('INTERNAL', `volume ${volume.name} has no EBS volume id recorded`);
    }
    const made = await this.ec2.createSnapshot(
      volumeId,
      `stowage snapshot ${name} of volume ${volume.name}`,
      {
        Name: name,
        [SNAPSHOT_NAME_TAG]: name,
        [SNAPSHOT_VOLUME_TAG]: volume.name,
      },
    );
    return view(made);
  }

  delete(id: string): Promise<void> {
    return this.ec2.deleteSnapshot(id);
  }

  async get(id: string): Promise<VolumeSnapshot | undefined> {
    // An id EC2 could not have made is no snapshot (EC2 would answer Malformed).
    if (!SNAPSHOT_ID.test(id)) return undefined;
    const [found] = await this.ec2.findSnapshots({ ids: [id] });
    return found ? view(found) : undefined;
  }

  async list(filter: { volume?: string; name?: string }): Promise<VolumeSnapshot[]> {
    const tags: Record<string, string> = {};
    if (filter.volume !== undefined) tags[SNAPSHOT_VOLUME_TAG] = filter.volume;
    if (filter.name !== undefined) tags[SNAPSHOT_NAME_TAG] = filter.name;
    const found = await this.ec2.findSnapshots({ tags, tagKeys: [SNAPSHOT_NAME_TAG] });
    return found.map(view);
  }
}

function view(s: Ec2Snapshot): VolumeSnapshot {
  const name = s.tags[SNAPSHOT_NAME_TAG];
  const volume = s.tags[SNAPSHOT_VOLUME_TAG];
  return {
    id: s.id,
    ...(name === undefined ? {} : { name }),
    ...(volume === undefined ? {} : { volume }),
    ...(s.volumeId === '' ? {} : { sourceId: s.volumeId }),
    sizeBytes: s.sizeGiB * GiB,
    createdAt: s.startTime,
    // recoverable/recovering: in the Recycle Bin, not usable until restored.
    state: s.state === 'completed' ? 'complete' : s.state === 'error' ? 'failed' : 'pending',
  };
}
