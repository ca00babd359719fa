import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';

export interface DevicePaths {
  /** Where the kernel's device nodes are (/dev). */
  devDir: string;
  /** udev's by-id links (/dev/disk/by-id). */
  byIdDir: string;
  /** sysfs block devices (/sys/block), for NVMe serial numbers. */
  sysBlockDir: string;
}

/**
 * Where the block device of an attached EBS volume appears on this host, or undefined while it
 * does not (yet). Xen instances show the requested name (/dev/xvdf, or /dev/sdf for xvdf); Nitro
 * instances show an NVMe disk whose by-id link and serial carry the volume id without its dash.
 */
export async function findEbsDevice(
  paths: DevicePaths,
  volumeId: string,
  requested: string,
): Promise<string | undefined> {
  const name = basename(requested);
  const bare = volumeId.replace('-', '');
  const candidates = [
    join(paths.devDir, name),
    join(paths.devDir, name.replace(/^xvd/, 'sd')),
    join(paths.devDir, name.replace(/^sd/, 'xvd')),
    join(paths.byIdDir, `nvme-Amazon_Elastic_Block_Store_${bare}`),
  ];
  for (const c of candidates) {
    const dev = await blockDevice(c);
    if (dev) return dev;
  }
  return nvmeBySerial(paths, bare);
}

async function blockDevice(path: string): Promise<string | undefined> {
  try {
    const real = await realpath(path);
    return (await stat(real)).isBlockDevice() ? real : undefined;
  } catch {
    return undefined;
  }
}

// Without udev (containers, minimal hosts) the by-id link is missing: read the serials.
async function nvmeBySerial(paths: DevicePaths, bare: string): Promise<string | undefined> {
  let names: string[];
  try {
    names = (await readdir(paths.sysBlockDir)).filter((n) => /^nvme\d+n\d+$/.test(n));
  } catch {
    return undefined;
  }
  for (const n of names) {
    const serial = await readFile(join(paths.sysBlockDir, n, 'device', 'serial'), 'utf8').catch(() => '');
    if (serial.trim() === bare) return blockDevice(join(paths.devDir, n));
  }
  return undefined;
}
