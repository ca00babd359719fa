import { mkdir, realpath, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeEach, describe, expect, it } from 'vitest';
import { type DevicePaths, findEbsDevice } from '../../drivers/ebs/devices.js';
import { useTempDir } from '../helpers/temp-dir.js';

/**
 * findEbsDevice over a fake /dev, /dev/disk/by-id and /sys/block in a temp dir. The block devices
 * are real device nodes made with mknod (loop major 7, a minor no loop device uses): stat sees a
 * block device, and nothing ever opens them.
 */
const VOL = 'vol-0abc1234def567890';
const BARE = 'vol0abc1234def567890';

let dir: string;
let paths: DevicePaths;

/** Makes a block device node at `path`; returns its real path (what findEbsDevice reports). */
async function blockNode(path: string, minor = 200): Promise<string> {
  await execa('mknod', [path, 'b', '7', String(minor)]);
  return realpath(path);
}

const tempDir = useTempDir('ebs-dev'); // removed after each test, with the device nodes in it

beforeEach(async () => {
  dir = tempDir();
  paths = { devDir: join(dir, 'dev'), byIdDir: join(dir, 'by-id'), sysBlockDir: join(dir, 'sys-block') };
  await Promise.all(Object.values(paths).map((p) => mkdir(p, { recursive: true })));
});

describe('findEbsDevice', () => {
  it('finds the requested name (Xen: /dev/xvdf)', async () => {
    const dev = await blockNode(join(paths.devDir, 'xvdf'));
    expect(await findEbsDevice(paths, VOL, '/dev/xvdf')).toBe(dev);
  });

  it('finds /dev/sdf when /dev/xvdf was requested', async () => {
    const dev = await blockNode(join(paths.devDir, 'sdf'));
    expect(await findEbsDevice(paths, VOL, '/dev/xvdf')).toBe(dev);
  });

  it('finds /dev/xvdf when /dev/sdf was requested', async () => {
    const dev = await blockNode(join(paths.devDir, 'xvdf'));
    expect(await findEbsDevice(paths, VOL, '/dev/sdf')).toBe(dev);
  });

  it('prefers the requested name over the NVMe link', async () => {
    const xvdf = await blockNode(join(paths.devDir, 'xvdf'), 200);
    await blockNode(join(paths.devDir, 'nvme1n1'), 201);
    await symlink('../dev/nvme1n1', join(paths.byIdDir, `nvme-Amazon_Elastic_Block_Store_${BARE}`));
    expect(await findEbsDevice(paths, VOL, '/dev/xvdf')).toBe(xvdf);
  });

  it('follows a symlink under the requested name to the device it names', async () => {
    const nvme = await blockNode(join(paths.devDir, 'nvme1n1'));
    await symlink('nvme1n1', join(paths.devDir, 'xvdf')); // as amazon-ec2-utils' udev rules make
    expect(await findEbsDevice(paths, VOL, '/dev/xvdf')).toBe(nvme);
  });

  it('finds a Nitro NVMe disk through its by-id link (relative, as udev makes it)', async () => {
    const nvme = await blockNode(join(paths.devDir, 'nvme1n1'));
    await symlink('../dev/nvme1n1', join(paths.byIdDir, `nvme-Amazon_Elastic_Block_Store_${BARE}`));
    expect(await findEbsDevice(paths, VOL, '/dev/xvdf')).toBe(nvme);
  });

  it('does not take the by-id link of another volume', async () => {
    await blockNode(join(paths.devDir, 'nvme1n1'));
    await symlink(
      '../dev/nvme1n1',
      join(paths.byIdDir, 'nvme-Amazon_Elastic_Block_Store_vol0fffffffffffffff0'),
    );
    expect(await findEbsDevice(paths, VOL, '/dev/xvdf')).toBeUndefined();
  });

  it('finds an NVMe disk by the serial in sysfs when there is no by-id link', async () => {
    for (const [n, serial] of [
      ['nvme0n1', 'vol0000000000000000a'],
      ['nvme1n1', BARE],
    ] as const) {
      await mkdir(join(paths.sysBlockDir, n, 'device'), { recursive: true });
      // The kernel pads the serial with spaces.
      await writeFile(join(paths.sysBlockDir, n, 'device', 'serial'), `${serial}      \n`);
    }
    await blockNode(join(paths.devDir, 'nvme0n1'), 200);
    const nvme1 = await blockNode(join(paths.devDir, 'nvme1n1'), 201);
    expect(await findEbsDevice(paths, VOL, '/dev/xvdf')).toBe(nvme1);
  });

  it('ignores sysfs entries that are not NVMe namespaces, and serials without their device node', async () => {
    await mkdir(join(paths.sysBlockDir, 'loop0', 'device'), { recursive: true });
    await writeFile(join(paths.sysBlockDir, 'loop0', 'device', 'serial'), BARE);
    await blockNode(join(paths.devDir, 'loop0'));
    await mkdir(join(paths.sysBlockDir, 'nvme1n1', 'device'), { recursive: true });
    await writeFile(join(paths.sysBlockDir, 'nvme1n1', 'device', 'serial'), BARE); // no /dev/nvme1n1
    expect(await findEbsDevice(paths, VOL, '/dev/xvdf')).toBeUndefined();
  });

  it('does not take a regular file under the requested name for a device', async () => {
    await writeFile(join(paths.devDir, 'xvdf'), '');
    await writeFile(join(paths.devDir, 'sdf'), '');
    await mkdir(join(paths.sysBlockDir, 'nvme1n1', 'device'), { recursive: true });
    await writeFile(join(paths.sysBlockDir, 'nvme1n1', 'device', 'serial'), BARE);
    await writeFile(join(paths.devDir, 'nvme1n1'), ''); // not a block device either
    expect(await findEbsDevice(paths, VOL, '/dev/xvdf')).toBeUndefined();
  });

  it('does not follow a dangling by-id link', async () => {
    await symlink('../dev/nvme9n1', join(paths.byIdDir, `nvme-Amazon_Elastic_Block_Store_${BARE}`));
    expect(await findEbsDevice(paths, VOL, '/dev/xvdf')).toBeUndefined();
  });

  it('returns undefined when nothing is there', async () => {
    expect(await findEbsDevice(paths, VOL, '/dev/xvdf')).toBeUndefined();
  });

  it('returns undefined when the directories do not exist at all', async () => {
    const missing = join(dir, 'missing');
    const none = { devDir: missing, byIdDir: missing, sysBlockDir: missing };
    expect(await findEbsDevice(none, VOL, '/dev/xvdf')).toBeUndefined();
  });
});
