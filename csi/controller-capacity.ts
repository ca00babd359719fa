import { status } from '@grpc/grpc-js';
import { StowageError } from '../src/base/errors.js';
import { formatSize } from '../src/base/size.js';
import type { VolumeSizing } from '../src/core/driver.js';
import { csiError } from './handler.js';
import type { CapacityRange } from './proto/messages.js';

/** A capacity range as numbers: 0 means "not given", as in the spec. */
export interface Range {
  required: number;
  limit: number;
}

/**
 * The request's capacity range in bytes; undefined when it sets neither bound. Negative bounds
 * are INVALID_ARGUMENT; a required size above the limit is OUT_OF_RANGE (the spec's code for a
 * range the plugin cannot meet).
 */
export function rangeOf(range: CapacityRange | null | undefined): Range | undefined {
  if (!range) return undefined;
  const required = Number(range.requiredBytes);
  const limit = Number(range.limitBytes);
  if (!Number.isSafeInteger(required) || !Number.isSafeInteger(limit) || required < 0 || limit < 0) {
    throw new StowageError(
      'INVALID_ARGUMENT',
      `capacity_range ${range.requiredBytes}..${range.limitBytes} bytes: both bounds must be whole numbers of bytes, 0 or more`,
    );
  }
  if (required === 0 && limit === 0) return undefined;
  if (limit > 0 && required > limit) {
    throw outOfRange(
      `capacity_range asks for at least ${required} bytes but at most ${limit}: fix the range`,
    );
  }
  return { required, limit };
}

export function outOfRange(message: string): StowageError {
  return csiError(status.OUT_OF_RANGE, 'INVALID_ARGUMENT', message);
}

/**
 * The size option a capacity range stands for, or undefined to leave the size as the options say.
 * The size is the required bytes rounded up to the driver's step and its floor (a volume may be
 * bigger than asked, up to the limit); with only a limit, the driver's default size when it fits,
 * else the limit rounded down. A size given in the parameters too is kept when it lies inside the
 * range and is OUT_OF_RANGE when it does not: both come from the user, and neither silently wins.
 */
export function sizeOptionFor(
  sizing: VolumeSizing,
  options: Record<string, unknown>,
  sizeGiven: boolean,
  range: Range | undefined,
): string | undefined {
  if (!range) return undefined;
  const { required, limit } = range;
  const asked = sizing.bytesOf(options);
  if (sizeGiven && asked !== undefined) {
    if (asked < required || (limit > 0 && asked > limit)) {
      throw outOfRange(
        `parameter ${sizing.option} (${formatSize(asked)}) lies outside capacity_range ${describe(range)}: give one or the other, or make them agree`,
      );
    }
    return undefined;
  }
  const step = sizing.stepBytes;
  const floor = sizing.minBytes(options);
  let bytes: number;
  if (required > 0) bytes = Math.max(roundUp(required, step), floor);
  else if (asked === undefined)
    return undefined; // the driver decides (EBS: the snapshot's size)
  else bytes = Math.max(Math.min(asked, Math.floor(limit / step) * step), floor);
  if (limit > 0 && bytes > limit) {
    throw outOfRange(
      `capacity_range ${describe(range)} cannot be met: these volumes are made in steps of ${formatSize(step)}, at least ${formatSize(floor)}, so the smallest that fits would be ${formatSize(bytes)}`,
    );
  }
  if (bytes > sizing.maxBytes) {
    throw outOfRange(
      `capacity_range ${describe(range)} asks for more than the largest volume this driver makes (${formatSize(sizing.maxBytes)})`,
    );
  }
  return sizing.format(bytes);
}

function roundUp(bytes: number, step: number): number {
  return Math.ceil(bytes / step) * step;
}

function describe(range: Range): string {
  const lo = range.required > 0 ? `${range.required}` : '0';
  const hi = range.limit > 0 ? `${range.limit}` : 'unlimited';
  return `[${lo}, ${hi}] bytes`;
}
