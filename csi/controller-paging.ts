import { status } from '@grpc/grpc-js';
import { StowageError } from '../src/base/errors.js';
import { validateVolumeName } from '../src/core/names.js';
import { csiError } from './handler.js';

/**
 * ListVolumes' pages. Names are listed in order, and a page's next_token stands for "after this
 * name": it stays valid when volumes are made or removed between pages (the spec lets the CO see
 * a volume twice or miss one then, never fail). Opaque to the CO: base64url of a tagged name.
 */
const TAG = 'stowage-volumes-after:';

export function nextToken(lastName: string): string {
  return Buffer.from(`${TAG}${lastName}`).toString('base64url');
}

/** The name a starting_token says to list after ('' = from the start); ABORTED when not one of ours. */
export function afterName(token: string): string | undefined {
  if (token === '') return undefined;
  const text = /^[A-Za-z0-9_-]+$/.test(token) ? Buffer.from(token, 'base64url').toString() : '';
  const name = text.startsWith(TAG) ? text.slice(TAG.length) : '';
  try {
    return validateVolumeName(name);
  } catch {
    throw csiError(
      status.ABORTED,
      'INVALID_ARGUMENT',
      `starting_token ${JSON.stringify(token.slice(0, 80))} is not one this plugin gave: list again from the start`,
    );
  }
}

/** One page of sorted `names`: at most `max` (0 = all) after `after`, and the token for the rest. */
export function page(
  names: readonly string[],
  after: string | undefined,
  max: number,
): { names: string[]; next?: string } {
  if (!Number.isInteger(max) || max < 0) {
    throw new StowageError('INVALID_ARGUMENT', `max_entries ${max} is negative: give 0 (no limit) or more`);
  }
  const sorted = [...names].sort();
  const rest = after === undefined ? sorted : sorted.filter((n) => n > after);
  if (max === 0 || rest.length <= max) return { names: rest };
  const shown = rest.slice(0, max);
  return { names: shown, next: nextToken(shown[shown.length - 1]!) };
}
