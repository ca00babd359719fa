import { StowageError } from '../base/errors.js';

export const MAX_VOLUME_NAME_LENGTH = 128;

// Docker's own rule for volume names; we add a length bound and forbid `..` so that a name can
// always be used as one path component under stowage's directories.
const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

export function validateVolumeName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0) {
    throw new StowageError('INVALID_ARGUMENT', 'volume name is missing: give a name such as "db-data"');
  }
  if (name.length > MAX_VOLUME_NAME_LENGTH) {
    throw new StowageError(
      'INVALID_ARGUMENT',
      `volume name is ${name.length} characters long; the limit is ${MAX_VOLUME_NAME_LENGTH}`,
    );
  }
  if (!NAME_RE.test(name) || name.includes('..')) {
    throw new StowageError(
      'INVALID_ARGUMENT',
      `invalid volume name ${JSON.stringify(name)}: use 2-${MAX_VOLUME_NAME_LENGTH} characters from ` +
        '[a-zA-Z0-9_.-], starting with a letter or digit, without ".." or "/"',
    );
  }
  return name;
}
