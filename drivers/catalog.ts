import type { ConfigSection } from '../src/base/config-section.js';
import type { DriverFactory } from '../src/index.js';
import { ebsConfig } from './ebs/config.js';
import { efsConfig } from './efs/config.js';
import { localConfig } from './local/config.js';
import { nfsConfig } from './nfs/config.js';

/**
 * The one list of the drivers that ship with stowage. Everything outside the driver folders that
 * needs a driver's name or a fact about it (the config schema, the registry, the flexvolume
 * executable, the runtime, the managed-plugin configs) reads it here, so adding a driver touches
 * its folder and this file.
 *
 * This module must stay cheap to import: the flexvolume executable reads the traits at every
 * `init` probe, and loads one driver per call. So each driver is behind a dynamic import (the
 * bundler splits it, with its SDK, into a chunk of its own), and the only driver files imported
 * here are their config sections, which load no zod (src/base/config-kit.ts says why).
 */
export interface DriverTraits {
  /** Goes through the controller-manager's attach/detach under Kubernetes (an EBS disk does). */
  flexAttach: boolean;
  /**
   * kubelet may chown the volume for a pod's fsGroup. False for network filesystems, where a
   * recursive chown would walk a whole share and fight other clients.
   */
  fsGroup: boolean;
  /** kubelet grows the filesystem after the controller resized the device. */
  requiresFSResize: boolean;
  /** The driver formats a block device, so kubernetes.io/fsType maps to its fsType option. */
  blockFs: boolean;
  /** The driver opens device nodes (loop devices, attached disks): its managed plugin needs /dev. */
  usesDevices: boolean;
  /** The driver calls AWS: the runtime builds the cloud clients only when one of these is enabled. */
  usesAws: boolean;
  /** Several hosts may mount one volume at once (a network filesystem): CSI's MULTI_NODE_* modes. */
  multiNode: boolean;
  /** A volume lives in one availability zone and only hosts of that zone can use it (CSI topology). */
  zonal: boolean;
  /** A volume lives on the host that created it (a disk image there): CSI topology is that host. */
  hostLocal: boolean;
}

interface CatalogEntry {
  traits: DriverTraits;
  /** The driver's section of the config (its key is the driver's name). */
  config: ConfigSection;
  load: () => Promise<DriverFactory>;
}

/** The traits a driver has; every other one is false. */
function traits(...on: (keyof DriverTraits)[]): DriverTraits {
  const has = (t: keyof DriverTraits) => on.includes(t);
  return {
    flexAttach: has('flexAttach'),
    fsGroup: has('fsGroup'),
    requiresFSResize: has('requiresFSResize'),
    blockFs: has('blockFs'),
    usesDevices: has('usesDevices'),
    usesAws: has('usesAws'),
    multiNode: has('multiNode'),
    zonal: has('zonal'),
    hostLocal: has('hostLocal'),
  };
}

const CATALOG = {
  local: {
    traits: traits('fsGroup', 'blockFs', 'usesDevices', 'hostLocal'),
    config: localConfig,
    load: async () => (await import('./local/index.js')).localDriver,
  },
  nfs: {
    traits: traits('multiNode'),
    config: nfsConfig,
    load: async () => (await import('./nfs/index.js')).nfsDriver,
  },
  efs: {
    traits: traits('usesAws', 'multiNode'),
    config: efsConfig,
    load: async () => (await import('./efs/index.js')).efsDriver,
  },
  ebs: {
    traits: traits('flexAttach', 'fsGroup', 'requiresFSResize', 'blockFs', 'usesDevices', 'usesAws', 'zonal'),
    config: ebsConfig,
    load: async () => (await import('./ebs/index.js')).ebsDriver,
  },
} as const satisfies Record<string, CatalogEntry>;

export type DriverName = keyof typeof CATALOG;

/** What the config's `drivers` is when nothing sets it. */
export const DEFAULT_DRIVERS: readonly DriverName[] = ['local'];

/** Every built-in driver name, in the catalog's order. */
export const DRIVER_NAMES = Object.keys(CATALOG) as DriverName[];

export function isDriverName(name: string): name is DriverName {
  return Object.hasOwn(CATALOG, name);
}

/** The traits of every built-in driver, by name. */
export const DRIVER_TRAITS: Record<DriverName, DriverTraits> = Object.fromEntries(
  DRIVER_NAMES.map((name) => [name, CATALOG[name].traits]),
) as Record<DriverName, DriverTraits>;

/** Each driver's config section, by name, with its own type (src/config.ts composes the schema). */
export type DriverConfigSections = { [N in DriverName]: (typeof CATALOG)[N]['config'] };
export const DRIVER_CONFIG_SECTIONS = Object.fromEntries(
  DRIVER_NAMES.map((name) => [name, CATALOG[name].config]),
) as DriverConfigSections;

/** A built-in driver's traits, or undefined for a name that is not one (no driver is loaded). */
export function driverTraits(name: string): DriverTraits | undefined {
  return isDriverName(name) ? CATALOG[name].traits : undefined;
}

/** Loads one driver's factory on demand, or undefined for a name that is not a built-in driver. */
export async function loadDriver(name: string): Promise<DriverFactory | undefined> {
  return isDriverName(name) ? CATALOG[name].load() : undefined;
}
