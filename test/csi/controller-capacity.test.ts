import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { rangeOf, sizeOptionFor } from '../../csi/controller-capacity.js';
import { afterName, nextToken, page } from '../../csi/controller-paging.js';
import { grpcError } from '../../csi/handler.js';
import type { VolumeSizing } from '../../src/core/driver.js';
import { thrown } from '../helpers/failure.js';

/** Capacity ranges to a size option, and ListVolumes' pages: the pure parts of the controller. */
const GiB = 1024 ** 3;
/** Sized like ebs: whole GiB, 1 GiB at least, 10 GiB by default, at most 16 GiB. */
const gib: VolumeSizing = {
  option: 'size',
  stepBytes: GiB,
  format: (b) => String(b / GiB),
  bytesOf: (o) => (o.size === undefined ? undefined : (o.size as number) * GiB),
  minBytes: () => GiB,
  maxBytes: 16 * GiB,
  recordedBytes: () => undefined,
};
const range = (required: number, limit = 0) => ({
  requiredBytes: String(required),
  limitBytes: String(limit),
});
const grpcOf = (fn: () => unknown) => grpcError(thrown(fn)).code;
const size = (r: ReturnType<typeof range>, options: Record<string, unknown> = { size: 10 }, given = false) =>
  sizeOptionFor(gib, options, given, rangeOf(r));

describe('capacity ranges', () => {
  it('no range, or an empty one, leaves the size to the options', () => {
    expect(rangeOf(null)).toBeUndefined();
    expect(size(range(0, 0))).toBeUndefined();
  });

  it('rounds the required bytes up to the step and the floor; a limit of exactly that is met', () => {
    expect(size(range(1))).toBe('1');
    expect(size(range(GiB))).toBe('1');
    expect(size(range(GiB + 1))).toBe('2');
    expect(size(range(2 * GiB, 2 * GiB))).toBe('2');
  });

  it('with only a limit: the default size when it fits, else the limit rounded down, never below the floor', () => {
    expect(size(range(0, 20 * GiB))).toBe('10');
    expect(size(range(0, 5 * GiB + 7))).toBe('5');
    expect(size(range(0, 2 * GiB), {})).toBeUndefined(); // the driver decides (a snapshot's size)
  });

  it('OUT_OF_RANGE when nothing in the range can be made; INVALID_ARGUMENT for negative bounds', () => {
    expect(grpcOf(() => size(range(GiB + 1, GiB + 2)))).toBe(status.OUT_OF_RANGE);
    expect(grpcOf(() => size(range(0, GiB - 1)))).toBe(status.OUT_OF_RANGE);
    expect(grpcOf(() => size(range(3 * GiB, 2 * GiB)))).toBe(status.OUT_OF_RANGE);
    expect(grpcOf(() => size(range(17 * GiB)))).toBe(status.OUT_OF_RANGE);
    expect(grpcOf(() => size(range(-1)))).toBe(status.INVALID_ARGUMENT);
  });

  it('a size given as an option too is kept inside the range, OUT_OF_RANGE outside it', () => {
    expect(size(range(4 * GiB, 8 * GiB), { size: 6 }, true)).toBeUndefined();
    expect(grpcOf(() => size(range(7 * GiB), { size: 6 }, true))).toBe(status.OUT_OF_RANGE);
    expect(grpcOf(() => size(range(0, 5 * GiB), { size: 6 }, true))).toBe(status.OUT_OF_RANGE);
  });
});

describe('ListVolumes pages', () => {
  it('a token stands for the name after which the next page starts, and only tokens given here are taken', () => {
    const first = page(['vc', 'va', 'vb', 'vd'], undefined, 2);
    expect(first).toEqual({ names: ['va', 'vb'], next: nextToken('vb') });
    // vb was removed meanwhile: the token still says where to go on.
    expect(page(['va', 'vc', 'vd'], afterName(first.next!), 2)).toEqual({ names: ['vc', 'vd'] });
    expect(page(['va'], undefined, 0)).toEqual({ names: ['va'] });
    expect(afterName('')).toBeUndefined();
    expect(grpcOf(() => afterName('YWJj'))).toBe(status.ABORTED);
    expect(grpcOf(() => afterName(nextToken('../etc')))).toBe(status.ABORTED);
    expect(grpcOf(() => page([], undefined, -2))).toBe(status.INVALID_ARGUMENT);
  });
});
