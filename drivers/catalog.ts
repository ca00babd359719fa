import type { DriverFactory } from '../src/index.js';

/**
 * The one list of the drivers that ship with stowage. Everything outside the driver folders that
 * needs a driver's name or a fact about it (the registry, the flexvolume executable, the runtime,
 * the managed-plugin configs) reads it here, so adding a driver touches its folder and this file.
 *
 * This module must stay cheap to import: the flexvolume executable reads the traits at every
 * `init` probe, and loads one driver per call. So each driver is behind a dynamic import (the
 * bundler splits it, with its SDK, into a chunk of its own) and nothing here imports a driver.
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
}

interface CatalogEntry {
  traits: DriverTraits;
  load: () => Promise<DriverFactory>;
}

const CATALOG = {
  local: {
    traits: {
      flexAttach: false,
      fsGroup: true,
      requiresFSResize: false,
      blockFs: true,
      usesDevices: true,
      usesAws: false,
    },
    load: async () => (await import('./local/index.js')).localDriver,
  },
  nfs: {
    traits: {
      flexAttach: false,
      fsGroup: false,
      requiresFSResize: false,
      blockFs: false,
      usesDevices: false,
      usesAws: false,
    },
    load: async () => (await import('./nfs/index.js')).nfsDriver,
  },
  efs: {
    traits: {
      flexAttach: false,
      fsGroup: false,
      requiresFSResize: false,
      blockFs: false,
      usesDevices: false,
      usesAws: true,
    },
    load: async () => (await import('./efs/index.js')).efsDriver,
  },
  ebs: {
    traits: {
      flexAttach: true,
      fsGroup: true,
      requiresFSResize: true,
      blockFs: true,
      usesDevices: true,
      usesAws: true,
    },
    load: async () => (await import('./ebs/index.js')).ebsDriver,
  },
} as const satisfies Record<string, CatalogEntry>;

export type DriverName = keyof typeof CATALOG;

/** Every built-in driver name, in the catalog's order. */
export const DRIVER_NAMES = Object.keys(CATALOG) as DriverName[];

export function isDriverName(name: string): name is DriverName {
  return Object.hasOwn(CATALOG, name);
}

/** The traits of every built-in driver, by name. */
export const DRIVER_TRAITS: Record<DriverName, DriverTraits> = Object.fromEntries(
  DRIVER_NAMES.map((name) => [name, CATALOG[name].traits]),
) as Record<DriverName, DriverTraits>;

/** A built-in driver's traits, or undefined for a name that is not one (no driver is loaded). */
export function driverTraits(name: string): DriverTraits | undefined {
  return isDriverName(name) ? CATALOG[name].traits : undefined;
}

/** Loads one driver's factory on demand, or undefined for a name that is not a built-in driver. */
export async function loadDriver(name: string): Promise<DriverFactory | undefined> {
  return isDriverName(name) ? CATALOG[name].load() : undefined;
}
