import { mkdir, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import type { LocalConfig } from '../../drivers/local/config.js';
import { LocalDriver } from '../../drivers/local/driver.js';
import type { AttachmentRecord, VolumeRecord } from '../../src/state/store.js';
import { FakeLoopDevices } from '../fakes/fake-loop.js';
import { FakeMounter } from '../fakes/fake-mounter.js';
import { driverContext, volumeInput } from '../helpers/driver-context.js';
import { failure, thrown } from '../helpers/failure.js';
import { useTempDir } from '../helpers/temp-dir.js';

/**
 * The local driver on its own: option parsing against its config, sparse image files in a temp
 * directory, adoption and remove policies, and loop devices over the fake kernel.
 */

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

const tempDir = useTempDir('local');
let dir: string;
let imageDir: string;
let mounter: FakeMounter;
let loop: HintedLoopDevices;

/** The fake loop devices, remembering the recorded device each findByFile was given. */
class HintedLoopDevices extends FakeLoopDevices {
  readonly hints: (string | undefined)[] = [];

  override async findByFile(file: string, recorded?: string): Promise<string[]> {
    this.hints.push(recorded);
    return super.findByFile(file);
  }
}

beforeEach(() => {
  dir = tempDir();
  imageDir = join(dir, 'images');
  mounter = new FakeMounter();
  loop = new HintedLoopDevices(mounter);
});

/**
 * The driver built directly over its config section (not through the factory and the config
 * schema), so that a test can hand it a section the schema would refuse.
 */
function driver(cfg: Partial<LocalConfig> = {}): LocalDriver {
  return new LocalDriver(driverContext({ mounter, loop, stagingDir: join(dir, 'staging') }), {
    imageDir,
    defaultSize: '1G',
    maxSize: '1T',
    defaultFsType: 'ext4',
    ...cfg,
  });
}

function image(name: string): string {
  return join(imageDir, `${name}.img`);
}

/** A volume record as the store holds it after provision(). */
function record(name: string, over: Partial<VolumeRecord> = {}): VolumeRecord {
  return {
    name,
    driver: 'local',
    options: { size: '64M', fsType: 'ext4' },
    givenOptions: ['size'],
    removePolicy: 'delete',
    adopted: false,
    createdAt: '2024-01-01T00:00:00.000Z',
    status: 'ready',
    fields: { image: image(name), sizeBytes: 64 * MiB },
    ...over,
  };
}

function attachment(name: string, device: string): AttachmentRecord {
  return {
    volume: name,
    host: 'test-host',
    device,
    state: 'attached',
    updatedAt: '2024-01-01T00:00:00.000Z',
  };
}

/** Creates an image file of `bytes` (sparse) as something outside stowage would have. */
async function existingImage(name: string, bytes: number): Promise<void> {
  await mkdir(imageDir, { recursive: true });
  await writeFile(image(name), '');
  await truncate(image(name), bytes);
}

describe('LocalDriver.parseOptions', () => {
  it('applies the config defaults and lists no option as given', () => {
    expect(driver().parseOptions({})).toEqual({ values: { size: '1G', fsType: 'ext4' }, given: [] });
    expect(driver({ defaultSize: '2G', defaultFsType: 'xfs' }).parseOptions({})).toEqual({
      values: { size: '2G', fsType: 'xfs' },
      given: [],
    });
  });

  it('takes -o size=64M, fsType and onRemove, recording the size in canonical form', () => {
    const d = driver();
    expect(d.parseOptions({ size: '64M' })).toEqual({
      values: { size: '64M', fsType: 'ext4' },
      given: ['size'],
    });
    expect(d.parseOptions({ SIZE: '327680K', fstype: 'xfs', onRemove: 'retain' })).toEqual({
      values: { size: '320M', fsType: 'xfs', onRemove: 'retain' },
      given: ['size', 'fsType', 'onRemove'],
    });
    expect(d.parseOptions({ size: '10' }).values).toMatchObject({ size: '10G' });
    expect(d.parseOptions({ size: '1.5G' }).values).toMatchObject({ size: '1536M' });
  });

  it('refuses sizes too small for the filesystem', () => {
    const d = driver();
    const ext4 = thrown(() => d.parseOptions({ size: '4M' }));
    expect(ext4.code).toBe('INVALID_ARGUMENT');
    expect(ext4.message).toBe('option size=4M is too small for ext4: the minimum is 8M');
    expect(d.parseOptions({ size: '8M' }).values).toMatchObject({ size: '8M' });

    const xfs = thrown(() => d.parseOptions({ size: '256M', fsType: 'xfs' }));
    expect(xfs.message).toBe('option size=256M is too small for xfs: the minimum is 300M');
    expect(d.parseOptions({ size: '300M', fsType: 'xfs' }).values).toMatchObject({ size: '300M' });
    // A default size too small for the requested filesystem is refused the same way.
    expect(thrown(() => driver({ defaultSize: '100M' }).parseOptions({ fsType: 'xfs' })).message).toBe(
      'option size=100M is too small for xfs: the minimum is 300M',
    );
  });

  it("refuses sizes above the host's maxSize, naming the config key", () => {
    const d = driver({ maxSize: '2G' });
    expect(d.parseOptions({ size: '2G' }).values).toMatchObject({ size: '2G' });
    const err = thrown(() => d.parseOptions({ size: '3G' }));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toBe("option size=3G is above this host's limit of 2G (config local.maxSize)");
    expect(thrown(() => driver().parseOptions({ size: '2T' })).message).toContain("host's limit of 1T");
  });

  it('refuses malformed sizes, bad enums and unknown options with the valid ones listed', () => {
    const d = driver();
    expect(thrown(() => d.parseOptions({ size: 'big' })).message).toMatch(
      /^option size="big" for driver local: size "big" is not a size: .*\(image size: /,
    );
    expect(thrown(() => d.parseOptions({ fsType: 'btrfs' })).message).toBe(
      'option fsType="btrfs" for driver local: must be one of ext4, xfs (filesystem made at first mount: ext4 or xfs)',
    );
    expect(thrown(() => d.parseOptions({ onRemove: 'archive' })).message).toMatch(
      /^option onRemove="archive" for driver local: must be one of delete, retain/,
    );
    const unknown = thrown(() => d.parseOptions({ size: '1G', type: 'ext4' }));
    expect(unknown.code).toBe('INVALID_ARGUMENT');
    expect(unknown.message).toBe(
      'unknown option "type" for driver local; valid options: size, fsType, onRemove',
    );
  });

  it('refuses a malformed maxSize in its config when the driver is made', () => {
    expect(() => driver({ maxSize: 'lots' })).toThrow('local.maxSize "lots" is not a size');
  });
});

describe('LocalDriver.provision', () => {
  it('creates a sparse image of exactly the requested size', async () => {
    const d = driver();
    const res = await d.provision(volumeInput(d, 'v1', { size: '64M' }));
    expect(res).toEqual({
      adopted: false,
      removePolicy: 'delete',
      fields: { image: image('v1'), sizeBytes: 64 * MiB },
    });
    const st = await stat(image('v1'));
    expect(st.isFile()).toBe(true);
    expect(st.size).toBe(64 * MiB);
    // Sparse: (almost) no blocks are allocated for 64 MiB of zeros.
    expect(st.blocks * 512).toBeLessThan(MiB);
    expect(st.mode & 0o777).toBe(0o600);
    expect((await stat(imageDir)).mode & 0o777).toBe(0o700);

    const big = await d.provision(volumeInput(d, 'v2', {}));
    expect((await stat(image('v2'))).size).toBe(GiB);
    expect(big.fields).toEqual({ image: image('v2'), sizeBytes: GiB });
    // Nothing is attached or formatted at create time.
    expect(loop.calls).toEqual([]);
    expect(mounter.count('mkfs')).toBe(0);
  });

  it('honours onRemove=retain for a new image', async () => {
    const d = driver();
    expect((await d.provision(volumeInput(d, 'v1', { size: '64M', onRemove: 'retain' }))).removePolicy).toBe(
      'retain',
    );
  });

  it('resuming an interrupted create keeps its own image and does not adopt it', async () => {
    const d = driver();
    const notes: Record<string, unknown> = {};
    await d.provision(volumeInput(d, 'v1', { size: '64M' }, { notes }));
    expect(notes).toEqual({ image: image('v1'), madeImage: true });
    await writeFile(image('v1'), 'written by the first attempt', { flag: 'r+' });

    const res = await d.provision(volumeInput(d, 'v1', { size: '64M' }, { notes }));
    expect(res).toEqual({
      adopted: false,
      removePolicy: 'delete',
      fields: { image: image('v1'), sizeBytes: 64 * MiB },
    });
    const st = await stat(image('v1'));
    expect(st.size).toBe(64 * MiB);
    // Not recreated: what the first attempt wrote is still there.
    expect((await readFile(image('v1'))).subarray(0, 28).toString()).toBe('written by the first attempt');
  });

  it('resuming when the first attempt had not written the image yet creates it', async () => {
    const d = driver();
    const res = await d.provision(volumeInput(d, 'v1', { size: '64M' }, { notes: {} }));
    expect(res.adopted).toBe(false);
    expect((await stat(image('v1'))).size).toBe(64 * MiB);
  });

  it('a Create killed while making the image leaves only a partial file, which a resumed Create replaces', async () => {
    // What a SIGKILL between open and truncate left: an empty file, never under the image's name.
    await mkdir(imageDir, { recursive: true });
    await writeFile(join(imageDir, '.v1.img.partial'), '');
    const d = driver();
    const res = await d.provision(volumeInput(d, 'v1', { size: '64M' }, { notes: {} }));
    expect(res).toEqual({
      adopted: false,
      removePolicy: 'delete',
      fields: { image: image('v1'), sizeBytes: 64 * MiB },
    });
    expect((await stat(image('v1'))).size).toBe(64 * MiB);
    await expect(stat(join(imageDir, '.v1.img.partial'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('a resumed Create adopts an image it did not note making (found there, not made)', async () => {
    await existingImage('old', 100 * MiB);
    const d = driver();
    const res = await d.provision(volumeInput(d, 'old', { size: '64M' }, { notes: {} }));
    expect(res).toMatchObject({ adopted: true, removePolicy: 'retain' });
  });

  it('adopts an image that exists without a record, keeping it on remove by default', async () => {
    await existingImage('old', 100 * MiB);
    const d = driver();
    const res = await d.provision(volumeInput(d, 'old', { size: '64M' }));
    // The file is taken as it is: its real size is recorded, it is not truncated to 64M.
    expect(res).toEqual({
      adopted: true,
      removePolicy: 'retain',
      fields: { image: image('old'), sizeBytes: 100 * MiB },
    });
    expect((await stat(image('old'))).size).toBe(100 * MiB);
  });

  it('an adopted image is deleted on remove only when onRemove=delete is given', async () => {
    await existingImage('old', 64 * MiB);
    const d = driver();
    const res = await d.provision(volumeInput(d, 'old', { onRemove: 'delete' }));
    expect(res).toMatchObject({ adopted: true, removePolicy: 'delete' });
  });

  it('refuses a path that exists but is not a regular file', async () => {
    await mkdir(image('dir'), { recursive: true });
    const d = driver();
    const err = await failure(d.provision(volumeInput(d, 'dir')));
    expect(err.code).toBe('CONFLICT');
    expect(err.message).toBe(
      `${image('dir')} exists and is not a regular file; move it away and create again`,
    );
  });

  it('refuses fsType=xfs with an apt hint when mkfs.xfs is not installed, creating nothing', async () => {
    mounter.tools.delete('mkfs.xfs');
    const d = driver();
    const err = await failure(d.provision(volumeInput(d, 'v1', { fsType: 'xfs' })));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toBe('fsType=xfs needs mkfs.xfs, which is not installed: apt-get install xfsprogs');
    await expect(stat(image('v1'))).rejects.toMatchObject({ code: 'ENOENT' });
    // ext4 does not need it.
    await expect(d.provision(volumeInput(d, 'v2', { size: '64M' }))).resolves.toMatchObject({
      adopted: false,
    });
  });

  it('accepts fsType=xfs when mkfs.xfs is there', async () => {
    const d = driver();
    const res = await d.provision(volumeInput(d, 'v1', { fsType: 'xfs', size: '300M' }));
    expect(res.fields).toEqual({ image: image('v1'), sizeBytes: 300 * MiB });
    expect(mounter.callsOf('hasTool')).toEqual([{ op: 'hasTool', path: 'mkfs.xfs' }]);
  });
});

describe('LocalDriver.destroy', () => {
  it('with policy delete removes the image, and is OK when it is already gone', async () => {
    const d = driver();
    await d.provision(volumeInput(d, 'v1', { size: '64M' }));
    await d.destroy(record('v1'));
    await expect(stat(image('v1'))).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(d.destroy(record('v1'))).resolves.toBeUndefined();
  });

  it('with policy retain keeps the image', async () => {
    const d = driver();
    await d.provision(volumeInput(d, 'v1', { size: '64M' }));
    await d.destroy(record('v1', { removePolicy: 'retain' }));
    expect((await stat(image('v1'))).size).toBe(64 * MiB);
  });

  it('finds the image from the record fields, or by name when the fields have none', async () => {
    const d = driver();
    await existingImage('elsewhere', 8 * MiB);
    await d.destroy(record('renamed', { fields: { image: image('elsewhere') } }));
    await expect(stat(image('elsewhere'))).rejects.toMatchObject({ code: 'ENOENT' });

    await existingImage('v2', 8 * MiB);
    await d.destroy(record('v2', { fields: {} }));
    await expect(stat(image('v2'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('refuses with IN_USE while a loop device backs the image, deleting nothing', async () => {
    const d = driver();
    await d.provision(volumeInput(d, 'v1', { size: '64M' }));
    const device = await loop.attach(image('v1'));
    const err = await failure(d.destroy(record('v1')));
    expect(err.code).toBe('IN_USE');
    expect(err.message).toBe(`image ${image('v1')} is still attached as ${device}; nothing was deleted`);
    expect((await stat(image('v1'))).size).toBe(64 * MiB);

    await loop.detach(device);
    await d.destroy(record('v1'));
    await expect(stat(image('v1'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('LocalDriver.abandon', () => {
  it('deletes the image and the partial file that an interrupted Create noted making, whatever the policy', async () => {
    const d = driver();
    const notes: Record<string, unknown> = {};
    await d.provision(volumeInput(d, 'v1', { size: '64M', onRemove: 'retain' }, { notes }));
    await writeFile(join(imageDir, '.v1.img.partial'), '');
    await d.abandon(record('v1', { status: 'creating', removePolicy: 'retain', fields: notes }));
    await expect(stat(image('v1'))).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(stat(join(imageDir, '.v1.img.partial'))).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(d.abandon(record('v1', { status: 'creating', fields: notes }))).resolves.toBeUndefined();
  });

  it('keeps an image the interrupted Create found there (it was adopting it)', async () => {
    await existingImage('old', 8 * MiB);
    const d = driver();
    await d.abandon(record('old', { status: 'creating', removePolicy: 'delete', fields: {} }));
    expect((await stat(image('old'))).size).toBe(8 * MiB);
  });
});

describe('LocalDriver.attach and detach', () => {
  it('attaches the image as a loop device, and reuses one that already backs the same file', async () => {
    const d = driver();
    await d.provision(volumeInput(d, 'v1', { size: '64M' }));
    await d.provision(volumeInput(d, 'v2', { size: '64M' }));
    expect(await d.attach(record('v1'))).toEqual({ device: '/dev/loop0' });
    expect(await d.attach(record('v1'))).toEqual({ device: '/dev/loop0' });
    expect(await d.attach(record('v2'))).toEqual({ device: '/dev/loop1' });
    expect(loop.count('attach')).toBe(2);
    expect(loop.attached()).toEqual([
      ['/dev/loop0', image('v1')],
      ['/dev/loop1', image('v2')],
    ]);
  });

  it('refuses to attach a missing image with NOT_FOUND', async () => {
    const err = await failure(driver().attach(record('gone')));
    expect(err.code).toBe('NOT_FOUND');
    expect(err.message).toBe(`the image file of volume gone (${image('gone')}) is missing`);
    expect(loop.count('attach')).toBe(0);
  });

  it('detach releases only the devices backing this image, whatever device was recorded', async () => {
    const d = driver();
    await d.provision(volumeInput(d, 'v1', { size: '64M' }));
    await d.provision(volumeInput(d, 'v2', { size: '64M' }));
    await d.attach(record('v1')); // loop0
    await d.attach(record('v2')); // loop1
    // The record says loop1 (reused since by v2): v2's device must survive.
    await d.detach(record('v1'), attachment('v1', '/dev/loop1'));
    expect(loop.attached()).toEqual([['/dev/loop1', image('v2')]]);
    expect(loop.calls.filter((c) => c.op === 'detach')).toEqual([{ op: 'detach', path: '/dev/loop0' }]);

    // Detaching again (nothing backs v1 any more) is success and touches nothing.
    await d.detach(record('v1'), attachment('v1', '/dev/loop0'));
    expect(loop.attached()).toEqual([['/dev/loop1', image('v2')]]);
    expect(loop.count('detach')).toBe(1);
  });

  it('detach releases every device backing the image (a stray second losetup too)', async () => {
    const d = driver();
    await d.provision(volumeInput(d, 'v1', { size: '64M' }));
    await loop.attach(image('v1'));
    await loop.attach(image('v1'));
    await d.detach(record('v1'), attachment('v1', '/dev/loop0'));
    expect(loop.attached()).toEqual([]);
  });
});

describe('LocalDriver.attachmentHolds', () => {
  it('holds while the recorded loop device backs the image, and not once it backs another', async () => {
    const d = driver();
    await d.provision(volumeInput(d, 'v1', { size: '64M' }));
    await d.provision(volumeInput(d, 'v2', { size: '64M' }));
    await d.attach(record('v1')); // loop0
    expect(await d.attachmentHolds(record('v1'), attachment('v1', '/dev/loop0'))).toBe(true);
    // A reboot (or a detach by hand) frees loop0, and v2 takes it.
    await loop.detach('/dev/loop0');
    expect(await d.attachmentHolds(record('v1'), attachment('v1', '/dev/loop0'))).toBe(false);
    await d.attach(record('v2'));
    expect(loop.attached()).toEqual([['/dev/loop0', image('v2')]]);
    expect(await d.attachmentHolds(record('v1'), attachment('v1', '/dev/loop0'))).toBe(false);
    // An attachment recorded before its device was known never holds.
    expect(await d.attachmentHolds(record('v1'), attachment('v1', ''))).toBe(false);
  });

  it("hands this host's recorded device to the loop devices, so sysfs' answer can be taken", async () => {
    const d = driver();
    await d.provision(volumeInput(d, 'v1', { size: '64M' }));
    const before = [
      attachment('v1', '/dev/loop3'),
      { ...attachment('v1', '/dev/loop9'), host: 'other-host' },
    ];
    await d.attach(record('v1'), undefined, { before, noteDevice: async () => undefined });
    await d.attach(record('v1'), undefined, { before: [], noteDevice: async () => undefined });
    await d.attachmentHolds(record('v1'), attachment('v1', '/dev/loop0'));
    await d.detach(record('v1'), attachment('v1', '/dev/loop0'));
    expect(loop.hints).toEqual(['/dev/loop3', undefined, '/dev/loop0', '/dev/loop0']);
  });
});

describe('LocalDriver facts', () => {
  it('mountSpec is the attached block device with the recorded filesystem', () => {
    const d = driver();
    expect(
      d.mountSpec(record('v1', { options: { size: '1G', fsType: 'xfs' } }), attachment('v1', '/dev/loop3')),
    ).toEqual({ kind: 'block', device: '/dev/loop3', fsType: 'xfs', mountOptions: [] });
    const err = thrown(() => d.mountSpec(record('v1'), undefined));
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toBe('volume v1 has no attached device to mount');
  });

  it('describe() gives the size from the recorded bytes, the filesystem and the image path', () => {
    const d = driver();
    expect(d.describe(record('v1'))).toEqual({ size: '64M', fsType: 'ext4', image: image('v1') });
    expect(
      d.describe(record('old', { adopted: true, fields: { image: '/srv/old.img', sizeBytes: 100 * MiB } })),
    ).toEqual({ size: '100M', fsType: 'ext4', image: '/srv/old.img' });
    // Without recorded bytes, the size option as recorded.
    expect(d.describe(record('v2', { options: { size: '2G', fsType: 'xfs' }, fields: {} }))).toEqual({
      size: '2G',
      fsType: 'xfs',
      image: image('v2'),
    });
  });

  it('has the identity the core relies on', () => {
    const d = driver();
    expect([d.name, d.scope, d.needsAttach]).toEqual(['local', 'local', true]);
    expect(Object.keys(d.optionSpecs)).toEqual(['size', 'fsType', 'onRemove']);
  });

  it('doctor() checks the tools it needs and reports a missing mkfs.xfs as optional', async () => {
    mounter.tools.delete('mkfs.xfs');
    mounter.tools.delete('losetup');
    expect(await driver().doctor()).toEqual([
      { name: 'local: losetup', ok: false, detail: 'missing; apt-get install util-linux mount' },
      { name: 'local: mkfs.ext4', ok: true, detail: 'found' },
      { name: 'local: blkid', ok: true, detail: 'found' },
      {
        name: 'local: mkfs.xfs',
        ok: true,
        detail: 'absent (fsType=xfs unavailable; apt-get install xfsprogs)',
      },
    ]);
  });
});
