import { describe, expect, it } from 'vitest';
import { isNfsVersionOption, mergeMountOptions, mountOptionKey } from '../../src/base/mount-options.js';

describe('mount options', () => {
  it('keys are the text before "=", compared without case', () => {
    expect(mountOptionKey('RSize=1048576')).toBe('rsize');
    expect(mountOptionKey('hard')).toBe('hard');
  });

  it('vers= and nfsvers= (any case) name the NFS version; other keys do not', () => {
    expect(['vers=3', 'nfsvers=4.1', 'NFSVERS=4', 'Vers'].map(isNfsVersionOption)).toEqual([
      true,
      true,
      true,
      true,
    ]);
    expect(['version=3', 'nfsversion=4', 'hard', 'minorversion=1'].map(isNfsVersionOption)).toEqual([
      false,
      false,
      false,
      false,
    ]);
  });

  it('a later list replaces an option of the same key, which keeps its place', () => {
    expect(mergeMountOptions(['hard', 'timeo=600', 'rsize=65536'], ['TIMEO=30', 'noac'])).toEqual([
      'hard',
      'TIMEO=30',
      'rsize=65536',
      'noac',
    ]);
    expect(mergeMountOptions([], [])).toEqual([]);
  });
});
