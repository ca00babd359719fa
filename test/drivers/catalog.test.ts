import { describe, expect, it } from 'vitest';
import {
  DEFAULT_DRIVERS,
  DRIVER_CONFIG_SECTIONS,
  DRIVER_NAMES,
  DRIVER_TRAITS,
  driverTraits,
  isDriverName,
  loadDriver,
} from '../../drivers/catalog.js';
import { registerBuiltins } from '../../drivers/index.js';
import { FLEX_DRIVERS } from '../../flexvolume/capabilities.js';
import { ConfigSchema, loadConfig } from '../../src/config.js';
import { DriverRegistry } from '../../src/core/registry.js';

describe('driver catalog', () => {
  it('lists the four built-in drivers', () => {
    expect([...DRIVER_NAMES].sort()).toEqual(['ebs', 'efs', 'local', 'nfs']);
  });

  it('registers, for the daemon, exactly the drivers it lists', async () => {
    const registry = new DriverRegistry();
    await registerBuiltins(registry);
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

  it('gives each driver the config key of its name, checked by the section its entry names', () => {
    expect(Object.keys(DRIVER_CONFIG_SECTIONS)).toEqual(DRIVER_NAMES);
    const keys = Object.keys(ConfigSchema.shape);
    for (const name of DRIVER_NAMES) expect(keys).toContain(name);
    // The section's own refusal, named by its key: the catalog's section is the one checked.
    expect(() => loadConfig({ file: '/dev/null', env: {}, flags: { ebs: { defaultType: 'gp9' } } })).toThrow(
      /ebs\.defaultType: .*gp3/,
    );
    expect(DEFAULT_DRIVERS.every((n) => DRIVER_NAMES.includes(n))).toBe(true);
  });

  it("resolves a section's defaults that depend on the rest of the config (local.imageDir under dataDir)", () => {
    const config = loadConfig({ file: '/dev/null', env: {}, flags: { dataDir: '/srv/s' } });
    expect(config.local.imageDir).toBe('/srv/s/local');
    expect(DRIVER_CONFIG_SECTIONS.nfs.resolve(config.nfs, { dataDir: '/x' })).toBe(config.nfs);
  });
});
