import type { DriverTraits } from '../drivers/catalog.js';
import { isStowageError, StowageError } from '../src/base/errors.js';
import type { Driver } from '../src/core/driver.js';
import { type Range, sizeOptionFor } from './controller-capacity.js';
import { requireThisHost, zoneFor } from './controller-topology.js';
import type { CreateVolumeRequest, StringMap, VolumeCapability } from './proto/messages.js';

/**
 * Keys external-provisioner adds itself (csi.storage.k8s.io/pv/name, pvc/name, pvc/namespace with
 * --extra-create-metadata): facts about the claim, not options of the volume. Dropped, not turned
 * into EBS tags: they would become recorded options, and a Create of the same name through Docker
 * (or by a provisioner without that flag) would then conflict with them.
 */
const CO_PREFIX = 'csi.storage.k8s.io/';

/** The driver options among StorageClass parameters: the same keys and values as Docker's `-o`. */
export function driverOptionsOf(parameters: StringMap): Record<string, string> {
  return Object.fromEntries(
    Object.entries(parameters).filter(([k]) => !k.toLowerCase().startsWith(CO_PREFIX)),
  );
}

/** The filesystem the capabilities ask for (mount.fs_type, from csi.storage.k8s.io/fstype), if any. */
function fsTypeOf(caps: readonly VolumeCapability[]): string | undefined {
  const types = [...new Set(caps.map((c) => c.mount?.fsType ?? '').filter((t) => t !== ''))];
  if (types.length > 1) {
    throw new StowageError(
      'INVALID_ARGUMENT',
      `volume_capabilities ask for different filesystems (${types.join(', ')}): a volume has one`,
    );
  }
  return types[0];
}

/**
 * The options of CreateVolume as the driver's Create takes them: the parameters, with what the
 * rest of the request says folded in as the options that say it — the filesystem of the mount
 * capability (`fsType`, block drivers), the snapshot source (`snapshotId`, ebs), the zone from
 * the topology (`availabilityZone`, ebs) and the capacity range (`size`). Checked here, so a
 * wrong request changes nothing. `sizeKnown`: the size is decided here (not by the driver at
 * Create, as an EBS snapshot's is), so a volume this call makes has it.
 */
export function createOptions(
  driver: Driver,
  traits: DriverTraits,
  req: CreateVolumeRequest,
  range: Range | undefined,
  nodeId: string,
): { options: Record<string, string>; sizeKnown: boolean } {
  const raw = driverOptionsOf(req.parameters);
  const given = driver.parseOptions(raw);
  const fsType = traits.blockFs ? fsTypeOf(req.volumeCapabilities) : undefined;
  if (fsType !== undefined) {
    if (!given.given.includes('fsType')) raw.fsType = fsType;
    else if (given.values.fsType !== fsType) {
      throw new StowageError(
        'INVALID_ARGUMENT',
        `parameter fsType=${String(given.values.fsType)} and the capability's fs_type ${fsType} disagree: give one`,
      );
    }
  }
  const source = req.volumeContentSource;
  if (source?.type === 'volume') {
    throw new StowageError(
      'INVALID_ARGUMENT',
      'a volume as content source (cloning) is not supported: create from a snapshot, or an empty volume',
    );
  }
  if (source?.type === 'snapshot') {
    if (!('snapshotId' in driver.optionSpecs)) {
      throw new StowageError(
        'INVALID_ARGUMENT',
        `driver ${driver.name} cannot create a volume from a snapshot`,
      );
    }
    const other = ['snapshotId', 'snapshotTag', 'volumeId'].filter((k) => given.given.includes(k));
    if (other.length > 0) {
      throw new StowageError(
        'INVALID_ARGUMENT',
        `the snapshot source and parameter ${other.join(', ')} both say where the data comes from: give one`,
      );
    }
    raw.snapshotId = source.snapshot.snapshotId;
    requireSnapshotId(driver, raw, source.snapshot.snapshotId);
  }
  if (traits.hostLocal) requireThisHost(req.accessibilityRequirements, nodeId);
  if (traits.zonal) {
    const zone = given.given.includes('availabilityZone') ? String(given.values.availabilityZone) : undefined;
    const chosen = zoneFor(req.accessibilityRequirements, zone);
    if (chosen !== undefined) raw.availabilityZone = chosen;
  }
  const parsed = driver.parseOptions(raw);
  if (!driver.sizing) return { options: raw, sizeKnown: false };
  const size = sizeOptionFor(
    driver.sizing,
    parsed.values,
    parsed.given.includes(driver.sizing.option),
    range,
  );
  if (size !== undefined) raw[driver.sizing.option] = size;
  // Parsed once more by the volume manager's Create, before it changes anything.
  return {
    options: raw,
    sizeKnown: size !== undefined || driver.sizing.bytesOf(parsed.values) !== undefined,
  };
}

/** A snapshot id the driver cannot even read names no snapshot: the spec's NOT_FOUND for a source. */
function requireSnapshotId(driver: Driver, raw: Record<string, string>, id: string): void {
  try {
    driver.parseOptions(raw);
  } catch (err) {
    const { snapshotId: _, ...rest } = raw;
    if (!isStowageError(err, 'INVALID_ARGUMENT')) throw err;
    driver.parseOptions(rest); // another option is wrong: that error, not NOT_FOUND
    throw new StowageError('NOT_FOUND', `snapshot ${JSON.stringify(id.slice(0, 80))} does not exist`, {
      cause: err,
    });
  }
}
