import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CommandResult, CommandRunner, RunOptions } from '../../src/mount/exec.js';
import { ProcessRunner } from '../../src/mount/exec.js';
import {
  devicesBacking,
  LOSETUP_LIST_ARGS,
  LosetupLoopDevices,
  loopDevicesFromSysfs,
  majMinOf,
  parseLosetupList,
} from '../../src/mount/loop.js';
import { LinuxMounter } from '../../src/mount/mounter.js';
import { parseMountInfo } from '../../src/mount/mountinfo.js';
import { mountContaining } from '../../src/mount/propagation.js';

/**
 * Finding the loop devices of an image by the file's identity (device and inode), not its path:
 * the kernel keeps the path as the mount namespace that attached it saw it, so a restarted stowage
 * container must still recognise its devices. Parsing over captured output, then real devices.
 */

// util-linux 2.38.1 (Debian 12), verbatim: note the padding of back-maj:min.
const LOSETUP_2_38 = `{
   "loopdevices": [
      {
         "name": "/dev/loop0",
         "back-file": "/var/lib/stowage/local/v1.img",
         "back-ino": 2146450,
         "back-maj:min": "     254:0  "
      },{
         "name": "/dev/loop1",
         "back-file": "/var/lib/stowage/local/v2.img (deleted)",
         "back-ino": 2146451,
         "back-maj:min": "     254:0  "
      }
   ]
}
`;
const NO_DEVICES = '{\n   "loopdevices": [\n\n   ]\n}\n';

describe('parseLosetupList', () => {
  it('reads name, backing path and identity, trimming the padded major:minor', () => {
    expect(parseLosetupList(LOSETUP_2_38)).toEqual([
      {
        name: '/dev/loop0',
        backFile: '/var/lib/stowage/local/v1.img',
        backIno: 2146450,
        backMajMin: '254:0',
      },
      {
        name: '/dev/loop1',
        backFile: '/var/lib/stowage/local/v2.img (deleted)',
        backIno: 2146451,
        backMajMin: '254:0',
      },
    ]);
  });

  it('takes numbers given as strings, and missing columns as unknown', () => {
    const out = JSON.stringify({
      loopdevices: [
        { name: '/dev/loop3', 'back-file': '/a.img', 'back-ino': '77', 'back-maj:min': '8:1' },
        { name: '/dev/loop4', 'back-file': '/b.img' },
        { name: '/dev/loop5', 'back-file': null, 'back-ino': null, 'back-maj:min': null },
        { 'back-file': '/nameless.img' },
      ],
    });
    expect(parseLosetupList(out)).toEqual([
      { name: '/dev/loop3', backFile: '/a.img', backIno: 77, backMajMin: '8:1' },
      { name: '/dev/loop4', backFile: '/b.img', backIno: undefined, backMajMin: undefined },
      { name: '/dev/loop5', backFile: undefined, backIno: undefined, backMajMin: undefined },
    ]);
  });

  it('has no devices in an empty list or in no output at all', () => {
    expect(parseLosetupList(NO_DEVICES)).toEqual([]);
    expect(parseLosetupList('')).toEqual([]);
    expect(parseLosetupList('\n')).toEqual([]);
  });

  it('calls output that is not JSON an internal error', () => {
    expect(() => parseLosetupList('/dev/loop0: []: (/a.img)')).toThrow(
      expect.objectContaining({ code: 'INTERNAL' }),
    );
  });
});

describe('devicesBacking', () => {
  const devices = parseLosetupList(LOSETUP_2_38);

  it('matches by identity whatever path the kernel recorded', () => {
    // Another container (another mount namespace) sees the same image at another path.
    expect(devicesBacking(devices, '/data/stowage/local/v1.img', { majMin: '254:0', ino: 2146450 })).toEqual([
      '/dev/loop0',
    ]);
    // A deleted image's device still has its old inode.
    expect(devicesBacking(devices, '/x', { majMin: '254:0', ino: 2146451 })).toEqual(['/dev/loop1']);
  });

  it('does not take a file recreated at the recorded path for the old one', () => {
    expect(devicesBacking(devices, '/var/lib/stowage/local/v1.img', { majMin: '254:0', ino: 99 })).toEqual(
      [],
    );
    // Same inode number on another filesystem is another file.
    expect(devicesBacking(devices, '/var/lib/stowage/local/v1.img', { majMin: '8:1', ino: 2146450 })).toEqual(
      [],
    );
  });

  it('compares paths only when losetup gives no identity', () => {
    const old = [{ name: '/dev/loop7', backFile: '/a.img', backIno: undefined, backMajMin: undefined }];
    expect(devicesBacking(old, '/a.img', { majMin: '254:0', ino: 1 })).toEqual(['/dev/loop7']);
    expect(devicesBacking(old, '/b.img', { majMin: '254:0', ino: 1 })).toEqual([]);
  });
});

describe('majMinOf', () => {
  /** glibc's makedev(). */
  const makedev = (major: bigint, minor: bigint) =>
    ((major & 0xfffn) << 8n) |
    ((major & 0xfffff000n) << 32n) |
    (minor & 0xffn) |
    ((minor & 0xffffff00n) << 12n);

  it('decodes dev_t as glibc does, large numbers included', () => {
    expect(majMinOf(65024n)).toBe('254:0');
    expect(majMinOf(makedev(8n, 1n))).toBe('8:1');
    expect(majMinOf(makedev(259n, 70_000n))).toBe('259:70000');
    expect(majMinOf(makedev(5000n, 1_048_575n))).toBe('5000:1048575');
  });

  it('agrees with mountinfo for a real file', async () => {
    const st = await stat(tmpdir(), { bigint: true });
    const mount = mountContaining(parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8')), tmpdir());
    // Filesystems with anonymous per-subvolume devices (btrfs) differ; this machine's do not.
    if (mount?.fsType === 'btrfs') return;
    expect(majMinOf(st.dev)).toBe(mount?.majorMinor);
  });
});

/**
 * A directory shaped like /sys/block: `loopN/size` for each device, and `loopN/loop/backing_file`
 * for the bound ones, as the kernel shows them.
 */
async function fakeSysBlock(
  root: string,
  devices: Record<string, { backingFile?: string; sectors?: number }>,
): Promise<string> {
  const sys = join(root, 'sys-block');
  await mkdir(sys, { recursive: true });
  for (const [name, d] of Object.entries(devices)) {
    await mkdir(join(sys, name), { recursive: true });
    await writeFile(join(sys, name, 'size'), `${d.sectors ?? 0}\n`);
    if (d.backingFile !== undefined) {
      await mkdir(join(sys, name, 'loop'), { recursive: true });
      await writeFile(join(sys, name, 'loop', 'backing_file'), `${d.backingFile}\n`);
    }
  }
  // Not loop devices: never looked at.
  await mkdir(join(sys, 'vda'), { recursive: true });
  return sys;
}

describe('LosetupLoopDevices.findByFile', () => {
  class RecordingRunner implements CommandRunner {
    readonly calls: { command: string; args: readonly string[] }[] = [];
    constructor(private readonly stdout: string) {}
    async run(command: string, args: readonly string[], _opts: RunOptions): Promise<CommandResult> {
      this.calls.push({ command, args });
      return { stdout: this.stdout, stderr: '', exitCode: 0 };
    }
  }

  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'stowage-loop-unit-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** An image of 8 MiB (16384 sectors) and losetup's answer naming `device` as its only user. */
  async function imageWithLosetupAnswer(device: string) {
    const image = join(dir, 'v1.img');
    await writeFile(image, '');
    await truncate(image, 8 * 1024 * 1024);
    const st = await stat(image, { bigint: true });
    const losetupSays = JSON.stringify({
      loopdevices: [
        { name: device, 'back-file': image, 'back-ino': Number(st.ino), 'back-maj:min': majMinOf(st.dev) },
      ],
    });
    return { image, losetupSays };
  }

  it('asks losetup when a bound device shows a path this namespace lacks and has the image’s size', async () => {
    const image = join(dir, 'v1.img');
    await writeFile(image, '');
    const st = await stat(image, { bigint: true });
    const out = JSON.stringify({
      loopdevices: [
        {
          name: '/dev/loop0',
          'back-file': '/old/ns/v1.img',
          'back-ino': Number(st.ino),
          'back-maj:min': ` ${majMinOf(st.dev)} `,
        },
        {
          name: '/dev/loop1',
          'back-file': image,
          'back-ino': Number(st.ino) + 1,
          'back-maj:min': majMinOf(st.dev),
        },
      ],
    });
    // loop0 was attached from another mount namespace: its path means nothing here.
    const sys = await fakeSysBlock(dir, { loop0: { backingFile: '/old/ns/v1.img', sectors: 0 } });
    const runner = new RecordingRunner(out);
    expect(await new LosetupLoopDevices(runner, 1000, sys).findByFile(image)).toEqual(['/dev/loop0']);
    expect(runner.calls).toEqual([{ command: 'losetup', args: LOSETUP_LIST_ARGS }]);
  });

  it('finds nothing for a missing file, without running losetup', async () => {
    const runner = new RecordingRunner(LOSETUP_2_38);
    expect(await new LosetupLoopDevices(runner, 1000).findByFile(join(dir, 'missing.img'))).toEqual([]);
    expect(runner.calls).toEqual([]);
  });

  it('answers "none" from sysfs without a process when no bound device shows the image', async () => {
    const { image, losetupSays } = await imageWithLosetupAnswer('/dev/loop1');
    const other = join(dir, 'other.img');
    await writeFile(other, '');
    const sys = await fakeSysBlock(dir, {
      loop0: { sectors: 0 }, // not bound
      loop1: { backingFile: other, sectors: 0 }, // another image, seen here
      loop2: { backingFile: '/gone/elsewhere.img', sectors: 2048 }, // unseen path, other size
      loop3: { backingFile: `${image} (deleted)`, sectors: 4 }, // a deleted file, other size
    });
    const runner = new RecordingRunner(losetupSays);
    expect(await new LosetupLoopDevices(runner, 1000, sys).findByFile(image)).toEqual([]);
    expect(runner.calls).toEqual([]);
  });

  it('takes a sysfs match without a process only when it is the device the store records', async () => {
    const { image, losetupSays } = await imageWithLosetupAnswer('/dev/loop1');
    const sys = await fakeSysBlock(dir, { loop1: { backingFile: image, sectors: 16384 } });
    const runner = new RecordingRunner(losetupSays);
    const loop = new LosetupLoopDevices(runner, 1000, sys);
    expect(await loop.findByFile(image, '/dev/loop1')).toEqual(['/dev/loop1']);
    expect(runner.calls).toEqual([]);
    // Unrecorded (or recorded as another device): the path may be another namespace's view of
    // another file, so losetup, which knows the inode, has the last word.
    expect(await loop.findByFile(image)).toEqual(['/dev/loop1']);
    expect(await loop.findByFile(image, '/dev/loop7')).toEqual(['/dev/loop1']);
    expect(runner.calls).toHaveLength(2);
  });

  it('does not trust a sysfs match that losetup contradicts (another namespace’s file at the same path)', async () => {
    const image = join(dir, 'v1.img');
    await writeFile(image, '');
    // sysfs shows loop4 backed by our path; the kernel's inode says it is another file.
    const sys = await fakeSysBlock(dir, { loop4: { backingFile: image, sectors: 0 } });
    const st = await stat(image, { bigint: true });
    const runner = new RecordingRunner(
      JSON.stringify({
        loopdevices: [
          {
            name: '/dev/loop4',
            'back-file': image,
            'back-ino': Number(st.ino) + 7,
            'back-maj:min': majMinOf(st.dev),
          },
        ],
      }),
    );
    expect(await new LosetupLoopDevices(runner, 1000, sys).findByFile(image)).toEqual([]);
    expect(runner.calls).toHaveLength(1);
  });

  it('asks losetup when a bound device of the image’s size shows a path that cannot be looked up', async () => {
    const { image, losetupSays } = await imageWithLosetupAnswer('/dev/loop2');
    const sys = await fakeSysBlock(dir, { loop2: { backingFile: '/v1.img', sectors: 16384 } });
    const runner = new RecordingRunner(losetupSays);
    expect(await new LosetupLoopDevices(runner, 1000, sys).findByFile(image, '/dev/loop2')).toEqual([
      '/dev/loop2',
    ]);
    expect(runner.calls).toEqual([{ command: 'losetup', args: LOSETUP_LIST_ARGS }]);
  });

  it('loopDevicesFromSysfs compares the looked-up file by inode and filesystem, not by path', async () => {
    const image = join(dir, 'v1.img');
    await writeFile(image, '');
    const st = await stat(image, { bigint: true });
    // The same file through another path (a hard link) is the same file.
    const alias = join(dir, 'alias.img');
    await sh('ln', [image, alias]);
    const sys = await fakeSysBlock(dir, { loop5: { backingFile: alias } });
    const identity = { majMin: majMinOf(st.dev), ino: Number(st.ino) };
    expect(await loopDevicesFromSysfs(sys, identity, 0)).toEqual(['/dev/loop5']);
    expect(await loopDevicesFromSysfs(sys, { ...identity, ino: identity.ino + 1 }, 0)).toEqual([]);
  });

  it('detach of a device the kernel freed meanwhile is success; of a bound one, the failure', async () => {
    const sys = await fakeSysBlock(dir, { loop0: { sectors: 0 }, loop1: { backingFile: '/x.img' } });
    const failing: CommandRunner = {
      run: async () => {
        throw new Error('losetup: detach failed: No such device or address');
      },
    };
    const loop = new LosetupLoopDevices(failing, 1000, sys);
    await expect(loop.detach('/dev/loop0')).resolves.toBeUndefined();
    await expect(loop.detach('/dev/loop1')).rejects.toThrow(/detach failed/);
  });
});

const sh = promisify(execFile);

describe('LosetupLoopDevices with real loop devices', () => {
  const loop = new LosetupLoopDevices(new ProcessRunner(), 10_000);
  let dir: string;
  const attached: string[] = [];
  const mounted: string[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'stowage-loop-'));
  });
  afterEach(async () => {
    for (const m of mounted.splice(0).reverse()) await sh('umount', ['--lazy', m]).catch(() => undefined);
    for (const d of attached.splice(0)) await loop.detach(d).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('finds a device attached through a path that no longer exists (another namespace’s view)', async () => {
    const images = join(dir, 'images');
    const elsewhere = join(dir, 'container-view');
    await mkdir(images);
    await mkdir(elsewhere);
    const image = join(images, 'v1.img');
    await writeFile(image, '');
    await truncate(image, 8 * 1024 * 1024);
    // The old container saw the images directory at another path, and attached from there.
    await sh('mount', ['--bind', images, elsewhere]);
    mounted.push(elsewhere);
    const device = await loop.attach(join(elsewhere, 'v1.img'));
    attached.push(device);
    const backingFile = async () =>
      (await readFile(`/sys/block/${device.slice('/dev/'.length)}/loop/backing_file`, 'utf8')).trim();
    expect(await backingFile()).toBe(join(elsewhere, 'v1.img'));
    // Lazily: the loop device keeps the file open through this mount.
    await sh('umount', ['--lazy', elsewhere]);
    mounted.pop();
    // The kernel's path now names nothing we can see (it reads "/v1.img": relative to a detached mount).
    expect(await backingFile()).not.toBe(image);
    expect(await loop.findByFile(join(elsewhere, 'v1.img'))).toEqual([]);

    expect(await loop.findByFile(image)).toEqual([device]);

    // Another image, and the same image recreated under its old path, are not matched.
    const other = join(images, 'v2.img');
    await writeFile(other, '');
    await truncate(other, 8 * 1024 * 1024);
    expect(await loop.findByFile(other)).toEqual([]);
    await unlink(image);
    await writeFile(image, '');
    expect(await loop.findByFile(image)).toEqual([]);

    await loop.detach(device);
    attached.pop();
    expect(await loop.findByFile(other)).toEqual([]);
  });

  it('finds its recorded device through sysfs without running losetup --list; umount -d frees it', async () => {
    const spawned: string[] = [];
    const real = new ProcessRunner();
    const counting: CommandRunner = {
      run: (command, args, opts) => {
        spawned.push([command, ...args].join(' '));
        return real.run(command, args, opts);
      },
    };
    const counted = new LosetupLoopDevices(counting, 10_000);
    const image = join(dir, 'v1.img');
    await writeFile(image, '');
    // An odd size: a device of another test (another namespace, a path unseen here) of the same
    // size would rightly send the question to losetup.
    await truncate(image, 33_800 * 512);
    await sh('mkfs.ext4', ['-q', '-F', image]);
    const device = await counted.attach(image);
    attached.push(device);
    spawned.length = 0;
    expect(await counted.findByFile(image, device)).toEqual([device]);
    expect(spawned).toEqual([]);

    const mountpoint = join(dir, 'mnt');
    await mkdir(mountpoint);
    const mounter = new LinuxMounter(counting, { commandTimeoutMs: 10_000, mkfsTimeoutMs: 60_000 });
    await mounter.mount(device, mountpoint, { fsType: 'ext4' });
    mounted.push(mountpoint);
    await mounter.unmount(mountpoint, { freeLoopDevice: true });
    mounted.pop();
    expect(spawned).toEqual([`mount -t ext4 -- ${device} ${mountpoint}`, `umount -d -- ${mountpoint}`]);
    // The same umount freed the device: nothing backs the image any more. (Not detached again
    // here: another test may own that device number by now.)
    expect(await counted.findByFile(image, device)).toEqual([]);
    attached.pop();
  });
});
