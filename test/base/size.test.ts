import { describe, expect, it } from 'vitest';
import { isStowageError } from '../../src/base/errors.js';
import { formatSize, parseSize } from '../../src/base/size.js';

const KiB = 1024;
const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const TiB = 1024 ** 4;

describe('parseSize', () => {
  it.each([
    ['10', 10 * GiB],
    ['1', GiB],
    ['64M', 64 * MiB],
    ['64m', 64 * MiB],
    ['1.5G', 1.5 * GiB],
    ['1GiB', GiB],
    ['1GB', GiB],
    ['1gib', GiB],
    ['512K', 512 * KiB],
    ['512KiB', 512 * KiB],
    ['2T', 2 * TiB],
    ['0.5T', 0.5 * TiB],
    [' 8 M ', 8 * MiB],
    ['65536K', 64 * MiB],
  ])('%j is %d bytes', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  it('rounds fractions down to whole bytes', () => {
    expect(parseSize('1.5K')).toBe(1536);
    expect(parseSize('0.1K')).toBe(102);
  });

  it.each(['', 'abc', '-1', '1e3', '10X', '1.G', 'M', '1 2G', '1,5G', 'ten'])('refuses %j', (text) => {
    let thrown: unknown;
    try {
      parseSize(text);
    } catch (err) {
      thrown = err;
    }
    expect(isStowageError(thrown, 'INVALID_ARGUMENT')).toBe(true);
    expect((thrown as Error).message).toBe(
      `size ${JSON.stringify(text)} is not a size: use a number of GiB (10) or a number with a unit (64M, 1G, 2T)`,
    );
  });

  it('names what was being parsed', () => {
    expect(() => parseSize('big', 'local.maxSize')).toThrow(/^local\.maxSize "big" is not a size: /);
  });
});

describe('formatSize', () => {
  it.each([
    [2 * TiB, '2T'],
    [GiB, '1G'],
    [1536 * MiB, '1536M'],
    [64 * MiB, '64M'],
    [512 * KiB, '512K'],
  ])('%d is %j', (bytes, text) => {
    expect(formatSize(bytes)).toBe(text);
  });

  it('shows sizes no unit divides as fractional MiB, or as bytes below 1 MiB', () => {
    expect(formatSize(1.5 * MiB + 1)).toBe('1.5M');
    expect(formatSize(1536)).toBe('1536B');
    expect(formatSize(0)).toBe('0B');
  });

  it('picks the largest unit that divides the size exactly', () => {
    expect(formatSize(1024 * GiB)).toBe('1T');
    expect(formatSize(1025 * MiB)).toBe('1025M');
    expect(formatSize(3 * KiB)).toBe('3K');
  });

  it('round trips through parseSize for every size a unit divides', () => {
    for (const bytes of [KiB, 300 * MiB, 8 * MiB, 1536 * MiB, 10 * GiB, 3 * TiB, 12345 * KiB]) {
      expect(parseSize(formatSize(bytes))).toBe(bytes);
    }
    for (const text of ['64M', '1G', '2T', '512K', '10G']) {
      expect(formatSize(parseSize(text))).toBe(text);
    }
    // Canonical form: different spellings of one size format the same.
    expect(formatSize(parseSize('65536K'))).toBe('64M');
    expect(formatSize(parseSize('1024'))).toBe('1T');
    expect(formatSize(parseSize('1.5G'))).toBe('1536M');
  });
});

describe('byte suffix (regression)', () => {
  it('reads a lone "B" as bytes, so formatSize round-trips small sizes', () => {
    expect(parseSize(formatSize(512))).toBe(512);
    expect(parseSize('100B')).toBe(100);
    expect(() => parseSize('10iB')).toThrow(/is not a size/);
  });
});
