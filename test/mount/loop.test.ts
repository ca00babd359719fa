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
  majMinOf,
  parseLosetupList,
} from '../../src/mount/loop.js';
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

  it('lists every device once and keeps those backed by the file, whatever path they recorded', async () => {
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
    const runner = new RecordingRunner(out);
    expect(await new LosetupLoopDevices(runner, 1000).findByFile(image)).toEqual(['/dev/loop0']);
    expect(runner.calls).toEqual([{ command: 'losetup', args: LOSETUP_LIST_ARGS }]);
  });

  it('finds nothing for a missing file, without running losetup', async () => {
    const runner = new RecordingRunner(LOSETUP_2_38);
    expect(await new LosetupLoopDevices(runner, 1000).findByFile(join(dir, 'missing.img'))).toEqual([]);
    expect(runner.calls).toEqual([]);
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
});
