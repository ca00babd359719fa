import { describe, expect, it } from 'vitest';
import {
  DRIVER_NAMES,
  DRIVER_TRAITS,
  driverTraits,
  isDriverName,
  loadDriver,
} from '../../drivers/catalog.js';
import { registerBuiltins } from '../../drivers/index.js';
import { FLEX_DRIVERS } from '../../flexvolume/capabilities.js';
import { DriverRegistry } from '../../src/core/registry.js';

describe('driver catalog', () => {
  it('lists the four built-in drivers', () => {
    expect([...DRIVER_NAMES].sort()).toEqual(['ebs', 'efs', 'local', 'nfs']);
  });

  it('registers, for the daemon, exactly the drivers it lists', () => {
    const registry = new DriverRegistry();
    registerBuiltins(registry);
    expect(registry.known()).toEqual([...DRIVER_NAMES].sort());
  });

  it('loads each driver lazily as the same factory the daemon registers', async () => {
    const { ebsDriver } = await import('../../drivers/ebs/index.js');
    const { efsDriver } = await import('../../drivers/efs/index.js');
    const { localDriver } = await import('../../drivers/local/index.js');
    const { nfsDriver } = await import('../../drivers/nfs/index.js');
    expect(await loadDriver('local')).toBe(localDriver);
    expect(await loadDriver('nfs')).toBe(nfsDriver);
    expect(await loadDriver('efs')).toBe(efsDriver);
    expect(await loadDriver('ebs')).toBe(ebsDriver);
  });

  it('knows no other name, including names inherited from Object', async () => {
    for (const name of ['', 'zfs', 'EBS', 'toString', '__proto__', 'hasOwnProperty']) {
      expect(isDriverName(name)).toBe(false);
      expect(driverTraits(name)).toBeUndefined();
      expect(await loadDriver(name)).toBeUndefined();
    }
  });

  it('gives kubelet the same init capabilities as before the catalog', () => {
    expect(FLEX_DRIVERS).toEqual({
      ebs: { attach: true, fsGroup: true, requiresFSResize: true, blockFs: true },
      local: { attach: false, fsGroup: true, requiresFSResize: false, blockFs: true },
      nfs: { attach: false, fsGroup: false, requiresFSResize: false, blockFs: false },
      efs: { attach: false, fsGroup: false, requiresFSResize: false, blockFs: false },
    });
  });

  it('marks the drivers that need AWS clients and device nodes', () => {
    const where = (trait: 'usesAws' | 'usesDevices') =>
      DRIVER_NAMES.filter((n) => DRIVER_TRAITS[n][trait]).sort();
    expect(where('usesAws')).toEqual(['ebs', 'efs']);
    expect(where('usesDevices')).toEqual(['ebs', 'local']);
  });
});
