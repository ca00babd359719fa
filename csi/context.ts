import type { DriverTraits } from '../drivers/catalog.js';
import type { Logger } from '../src/base/logger.js';
import type { HostDirectory } from '../src/core/hosts.js';
import type { VolumeManager } from '../src/core/volume-manager.js';

/**
 * What the CSI services of one driver need, handed in by src/cli/csi.ts (the composition): the
 * same VolumeManager and HostDirectory the Docker and flexvolume doors use, nothing of their own.
 */
export interface CsiContext {
  /** The driver this plugin serves (one per process, like one Docker socket per driver). */
  driver: string;
  traits: DriverTraits;
  manager: VolumeManager;
  hosts: HostDirectory;
  /** This node's id: the store's host id, so ControllerPublish finds the host record. */
  nodeId: string;
  /** stowage's version, the plugin's vendor_version. */
  version: string;
  /** kubelet's directory: staging and target paths must be inside it. */
  kubeletDir: string;
  log: Logger;
  /** Whether this process finished registering the host and reconciling (Probe's readiness). */
  ready(): boolean;
  /** One cheap round trip to the metadata store; throws when the store cannot answer (Probe). */
  checkStore(): Promise<void>;
  /** This node's topology segments (ebs: its zone; local: the host), or undefined for none. */
  nodeTopology(): Promise<Record<string, string> | undefined>;
}

/** The topology keys stowage's CSI plugins report. */
export const TOPOLOGY_ZONE = 'topology.kubernetes.io/zone';
export const TOPOLOGY_HOST = 'topology.stowage.io/host';

/** `<driver>.csi.stowage.io`: the CSIDriver object's name and the StorageClass provisioner. */
export function pluginName(driver: string): string {
  return `${driver}.csi.stowage.io`;
}
