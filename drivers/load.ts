import type { DriverFactory } from '../src/index.js';

/**
 * One driver's factory, loaded on demand: the flexvolume executable serves a single driver and
 * must not pay for loading the others (cold start counts on every kubelet call).
 */
export async function loadDriver(name: string): Promise<DriverFactory | undefined> {
  switch (name) {
    case 'local':
      return (await import('./local/index.js')).localDriver;
    case 'nfs':
      return (await import('./nfs/index.js')).nfsDriver;
    case 'ebs':
      return (await import('./ebs/index.js')).ebsDriver;
    case 'efs':
      return (await import('./efs/index.js')).efsDriver;
    default:
      return undefined;
  }
}
