import { mkdtemp, readFile, realpath, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { majorMinor } from '../../src/mount/device-number.js';
import type { CommandRunner } from '../../src/mount/exec.js';
import { LinuxMounter } from '../../src/mount/mounter.js';
import { parseMountInfo } from '../../src/mount/mountinfo.js';

/**
 * Which mounts show a device (LinuxMounter.mountsOfDevice, what the grow pipeline asks before it
 * checks a bare filesystem) and the `major:minor` it compares them by. The numbers are checked
 * against GNU stat's own (`%t:%T`, hex) on real device nodes: /dev/null, and block devices made
 * with mknod in a temp dir (nothing ever opens them), one with a minor above 255, whose high bits
 * sit apart from its low ones in the kernel's encoding.
 */

let dir: string;
let mountInfoPath: string;
/** The question is answered from the mount table and stat: any command run fails the test. */
const runner: CommandRunner = {
  run: async (command) => Promise.reject(new Error(`unexpected command ${command}`)),
};

function mounter(): LinuxMounter {
  return new LinuxMounter(runner, { commandTimeoutMs: 1000, mkfsTimeoutMs: 1000, mountInfoPath });
}

/** `major:minor` of a device node as GNU stat prints it (hex), in decimal as mountinfo has it. */
async function statNumber(path: string): Promise<string> {
  const { stdout } = await execa('stat', ['-L', '-c', '%t:%T', '--', path]);
  const [major, minor] = stdout.trim().split(':');
  return `${Number.parseInt(major!, 16)}:${Number.parseInt(minor!, 16)}`;
}

async function blockNode(name: string, major: number, minor: number): Promise<string> {
  const path = join(dir, name);
  await execa('mknod', [path, 'b', String(major), String(minor)]);
  return path;
}

/** A mountinfo line of an ext4 filesystem on `source` (device `number`) mounted at `mountPoint`. */
function line(id: number, number: string, mountPoint: string, source: string, root = '/'): string {
  return `${id} 22 ${number} ${root} ${mountPoint} rw,relatime shared:${id} - ext4 ${source} rw`;
}

const ROOT = line(22, '254:1', '/', '/dev/vda1');

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'stowage-device-mounts-'));
  mountInfoPath = join(dir, 'mountinfo');
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true }); // the device nodes go with it
});

describe('majorMinor', () => {
  it('reads /dev/null and block devices with small and large minors as stat does', async () => {
    const nodes = [
      '/dev/null',
      await blockNode('small', 8, 17),
      await blockNode('wide', 259, 300_000),
      await blockNode('high-major', 4000, 255),
    ];
    for (const node of nodes) {
      expect(majorMinor((await stat(node)).rdev), node).toBe(await statNumber(node));
    }
    expect(await statNumber(nodes[2]!)).toBe('259:300000');
  });

  // st_dev of a file is its filesystem's number (ext4, tmpfs, overlay; not so in a btrfs subvolume).
  it("gives a file's own filesystem the number mountinfo shows for that filesystem", async () => {
    const file = join(dir, 'plain');
    await writeFile(file, 'x');
    const number = majorMinor((await stat(file)).dev);
    const mounts = parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8'));
    expect(mounts.map((m) => m.majorMinor)).toContain(number);
  });
});

describe('LinuxMounter.mountsOfDevice', () => {
  it('finds the mounts that carry the block device’s major:minor, under any name, and no others', async () => {
    const dev = await blockNode('xvdf', 259, 300_000);
    await writeFile(
      mountInfoPath,
      [
        ROOT,
        line(700, '259:300000', '/var/lib/stowage/volumes/db', '/dev/nvme1n1'),
        line(701, '259:300000', '/var/lib/kubelet/pods/p/volumes/db', '/dev/nvme1n1', '/data'),
        // What a parser dropping the minor's high bits, or the major's, would take for it.
        line(702, '259:224', '/mnt/low-bits', '/dev/other'),
        line(703, '3:300000', '/mnt/wrong-major', '/dev/other2'),
      ].join('\n'),
    );
    const found = await mounter().mountsOfDevice(dev);
    expect(found.map((m) => m.mountPoint)).toEqual([
      '/var/lib/stowage/volumes/db',
      '/var/lib/kubelet/pods/p/volumes/db',
    ]);
  });

  it('finds mounts by the device’s name and by the name a link to it resolves to', async () => {
    const dev = await realpath(await blockNode('nvme1n1', 7, 250));
    const link = join(dir, 'xvdf');
    await symlink(dev, link);
    await writeFile(
      mountInfoPath,
      [
        ROOT,
        // Another number than the node's: these match by name only.
        line(700, '7:99', '/mnt/by-real-name', dev),
        line(701, '7:98', '/mnt/by-link', link),
        line(702, '7:97', '/mnt/unrelated', join(dir, 'nvme2n1')),
      ].join('\n'),
    );
    expect((await mounter().mountsOfDevice(link)).map((m) => m.mountPoint)).toEqual([
      '/mnt/by-real-name',
      '/mnt/by-link',
    ]);
    expect((await mounter().mountsOfDevice(dev)).map((m) => m.mountPoint)).toEqual(['/mnt/by-real-name']);
  });

  it('matches what is no block device (a character device, a file, nothing) by its name only', async () => {
    const file = join(dir, 'disk.img');
    await writeFile(file, '');
    const fileDev = majorMinor((await stat(file)).dev);
    await writeFile(
      mountInfoPath,
      [
        ROOT,
        line(700, '1:3', '/mnt/null-number', 'tmpfs'),
        line(701, fileDev, '/mnt/file-fs', '/dev/somewhere'),
        line(702, '0:0', '/mnt/zero', 'none'),
        line(703, '7:5', '/mnt/gone', '/dev/gone-disk'),
      ].join('\n'),
    );
    const m = mounter();
    expect(await m.mountsOfDevice('/dev/null')).toEqual([]);
    expect(await m.mountsOfDevice(file)).toEqual([]);
    expect((await m.mountsOfDevice('/dev/gone-disk')).map((e) => e.mountPoint)).toEqual(['/mnt/gone']);
    expect(await m.mountsOfDevice(join(dir, 'missing'))).toEqual([]);
  });
});
