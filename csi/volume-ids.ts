import { createHash } from 'node:crypto';
import { StowageError } from '../src/base/errors.js';
import { validateVolumeName } from '../src/core/names.js';

/** CSI's limit on a CreateVolume name (and ours on a volume id). */
const MAX_CSI_NAME = 128;
// The spec's banned characters in a name: control characters other than common whitespace.
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are exactly what the spec bans
const BANNED = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]/;

/**
 * The stowage volume a CreateVolume name stands for. external-provisioner's names (`pvc-<uid>`)
 * are valid stowage names and are kept, so `docker volume ls` and `stowage volumes ls` show the
 * PV's name; any other name the spec allows maps to `csi-<40 hex>` of it, the same every time, so
 * a repeated CreateVolume finds the volume without a lookup table.
 */
export function volumeNameFor(csiName: string): string {
  if (csiName === '')
    throw new StowageError('INVALID_ARGUMENT', 'name is missing: CreateVolume needs the volume name');
  if (csiName.length > MAX_CSI_NAME || BANNED.test(csiName)) {
    throw new StowageError(
      'INVALID_ARGUMENT',
      `name ${JSON.stringify(csiName.slice(0, 40))}… is not a valid CSI name: at most ${MAX_CSI_NAME} characters, no control characters`,
    );
  }
  try {
    return validateVolumeName(csiName);
  } catch {
    return `csi-${createHash('sha256').update(csiName).digest('hex').slice(0, 40)}`;
  }
}

/**
 * A volume id from a request: INVALID_ARGUMENT when missing (the spec's code for a missing field);
 * one that cannot be a stowage name is NOT_FOUND (no such volume can exist).
 */
export function requireVolumeId(id: string | undefined, field = 'volume_id'): string {
  if (!id) throw new StowageError('INVALID_ARGUMENT', `${field} is missing`);
  try {
    return validateVolumeName(id);
  } catch {
    throw new StowageError('NOT_FOUND', `volume ${JSON.stringify(id.slice(0, 130))} does not exist`);
  }
}
