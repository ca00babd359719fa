import { link, mkdir, open, readdir, stat, statfs, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  type AttachmentRecord,
  type AttachRecords,
  type AttachTarget,
  blockMountSpec,
  crashPoint,
  type DoctorCheck,
  type Driver,
  type DriverContext,
  formatSize,
  type MountSpec,
  type ParsedOptions,
  type ProvisionResult,
  parseOptions,
  parseSize,
  recordedOptions,
  type StorageCapacity,
  StowageError,
  type VolumeInput,
  type VolumeRecord,
  type VolumeSizing,
} from '../../src/index.js';
import type { LocalConfig } from './config.js';
import { LOCAL_OPTION_SPECS, type LocalOptions, MIN_BYTES } from './options.js';

/**
 * Each volume is a sparse image file, attached as a loop device at first mount, formatted if
 * blank and mounted by the core's block pipeline: the same path EBS disks take.
 */
export class LocalDriver implements Driver {
  readonly name = 'local';
  readonly scope = 'local' as const;
  readonly needsAttach = true;
  readonly lazyUnmount = false;
  /** The image's loop device is its own: umount frees it, and detach finds it gone (see detach). */
  readonly unmountFreesLoop = true;
  readonly optionSpecs = LOCAL_OPTION_SPECS;
  readonly sizing: VolumeSizing;
  private readonly maxBytes: number;

  constructor(
    private readonly ctx: DriverContext,
    private readonly cfg: LocalConfig,
  ) {
    this.maxBytes = parseSize(cfg.maxSize, 'local.maxSize');
    this.sizing = {
      option: 'size',
      // Whole MiB: the size option's text (formatSize) says every multiple of a MiB exactly.
      stepBytes: MiB,
      format: formatSize,
      bytesOf: (o) => parseSize(recordedOptions<LocalOptions>({ options: o }).size),
      minBytes: (o) => MIN_BYTES[recordedOptions<LocalOptions>({ options: o }).fsType],
      maxBytes: this.maxBytes,
      recordedBytes: (v) => (typeof v.fields.sizeBytes === 'number' ? v.fields.sizeBytes : undefined),
    };
  }

  parseOptions(raw: Record<string, string>): ParsedOptions<LocalOptions> {
    const parsed = parseOptions<LocalOptions>(this.name, this.optionSpecs, raw, {
      size: this.cfg.defaultSize,
      fsType: this.cfg.defaultFsType,
    });
    const { fsType } = parsed.values;
    const size = parseSize(parsed.values.size);
    if (size < MIN_BYTES[fsType]) {
      throw new StowageError(
        'INVALID_ARGUMENT',
        `option size=${formatSize(size)} is too small for ${fsType}: the minimum is ${formatSize(MIN_BYTES[fsType])}`,
      );
    }
    if (size > this.maxBytes) {
      throw new StowageError(
        'INVALID_ARGUMENT',
        `option size=${formatSize(size)} is above this host's limit of ${this.cfg.maxSize} (config local.maxSize)`,
      );
    }
    return parsed;
  }

  async provision(volume: VolumeInput): Promise<ProvisionResult> {
    const opts = recordedOptions<LocalOptions>(volume);
    if (opts.fsType === 'xfs' && !(await this.ctx.mounter.hasTool('mkfs.xfs'))) {
      throw new StowageError(
        'UNAVAILABLE',
        'fsType=xfs needs mkfs.xfs, which is not installed: apt-get install xfsprogs',
      );
    }
    const image = this.imagePath(volume.name);
    const sizeBytes = parseSize(opts.size);
    await mkdir(this.cfg.imageDir, { recursive: true, mode: 0o700 });
    const found = await statOrUndefined(image);
    if (found && !found.isFile()) {
      throw new StowageError(
        'CONFLICT',
        `${image} exists and is not a regular file; move it away and create again`,
      );
    }
    if (found && volume.noted.madeImage !== true) {
      // An image no record names (state lost, or kept by an earlier Remove): only a completed
      // Create puts one under this name (see below), so it is whole. Take it over and keep it
      // unless the user asks explicitly for delete.
      this.ctx.log.warn({ volume: volume.name, image }, 'adopting an existing image file');
      return {
        adopted: true,
        removePolicy: opts.onRemove ?? 'retain',
        fields: { image, sizeBytes: found.size },
      };
    }
    if (!found) {
      // Made under a temporary name and linked into place whole: a crash leaves either no image or
      // a complete one, and the note (written first) says it is this Create's.
      const partial = this.partialPath(volume.name);
      const fh = await open(partial, 'w', 0o600);
      try {
        await fh.truncate(sizeBytes); // sparse: no blocks are written
        await fh.sync();
      } finally {
        await fh.close();
      }
      crashPoint('local:image-written');
      await volume.note({ image, madeImage: true });
      await link(partial, image).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
        await volume.note({ madeImage: false }); // not ours: abandon must leave it alone
        throw new StowageError('CONFLICT', `${image} appeared while volume ${volume.name} was being created`);
      });
    }
    crashPoint('local:image-linked');
    await unlinkIfPresent(this.partialPath(volume.name));
    return {
      adopted: false,
      removePolicy: opts.onRemove ?? 'delete',
      fields: { image, sizeBytes },
    };
  }

  async abandon(volume: VolumeRecord): Promise<void> {
    await unlinkIfPresent(this.partialPath(volume.name));
    if (volume.fields.madeImage !== true) return; // nothing of ours under the image's name
    await this.destroy({ ...volume, removePolicy: 'delete' });
  }

  async destroy(volume: VolumeRecord): Promise<void> {
    const image = this.imageOf(volume);
    if (volume.removePolicy !== 'delete') {
      this.ctx.log.info({ volume: volume.name, image, policy: volume.removePolicy }, 'image kept');
      return;
    }
    const users = await this.ctx.loop.findByFile(image);
    if (users.length > 0) {
      throw new StowageError(
        'IN_USE',
        `image ${image} is still attached as ${users.join(', ')}; nothing was deleted`,
      );
    }
    await unlinkIfPresent(image);
  }

  async attach(
    volume: VolumeRecord,
    _target?: AttachTarget,
    recorded?: AttachRecords,
  ): Promise<{ device: string }> {
    const image = this.imageOf(volume);
    if (!(await statOrUndefined(image))) {
      throw new StowageError('NOT_FOUND', `the image file of volume ${volume.name} (${image}) is missing`);
    }
    // A device already backing the image (a crash after losetup, before the record said so) is
    // used rather than a second one: two loop devices over one image are two writers to it.
    const known = recorded?.before.find((a) => a.host === this.ctx.host)?.device;
    const [existing] = await this.ctx.loop.findByFile(image, known || undefined);
    if (existing) return { device: existing };
    return { device: await this.ctx.loop.attach(image) };
  }

  /**
   * The recorded loop device is reused only while it still backs this volume's image: after a
   * reboot, or a detach by hand, /dev/loopN may be free or back another volume's image, and
   * mounting it would show that volume's data. Asked of the kernel (sysfs, no process).
   */
  async attachmentHolds(volume: VolumeRecord, attachment: AttachmentRecord): Promise<boolean> {
    if (!attachment.device) return false;
    const devices = await this.ctx.loop.findByFile(this.imageOf(volume), attachment.device);
    return devices.includes(attachment.device);
  }

  async detach(volume: VolumeRecord, attachment: AttachmentRecord): Promise<void> {
    // Detach only devices that really back this image: a recorded /dev/loopN may have been reused.
    // After an unmount the device is usually gone already (unmountFreesLoop): then nothing is run.
    const image = this.imageOf(volume);
    for (const device of await this.ctx.loop.findByFile(image, attachment.device || undefined)) {
      await this.ctx.loop.detach(device);
    }
    this.ctx.log.debug({ volume: volume.name, recorded: attachment.device }, 'loop devices released');
  }

  mountSpec(volume: VolumeRecord, attachment: AttachmentRecord | undefined): MountSpec {
    return blockMountSpec(volume, attachment);
  }

  /**
   * The free space of the filesystem holding the images, less what the images already made may
   * still claim: they are sparse, so a new one takes no space until written, and counting only
   * the free blocks would promise the same space to every volume.
   */
  async capacity(options: Record<string, unknown>): Promise<StorageCapacity> {
    const fs = await statfs(await nearestExisting(this.cfg.imageDir));
    let promised = 0;
    const names = await readdir(this.cfg.imageDir).catch(() => [] as string[]);
    for (const name of names.filter((n) => n.endsWith('.img') || n.endsWith('.img.partial'))) {
      const st = await statOrUndefined(join(this.cfg.imageDir, name));
      if (st?.isFile()) promised += Math.max(0, st.size - st.blocks * 512);
    }
    const availableBytes = Math.max(0, fs.bavail * fs.bsize - promised);
    return {
      availableBytes,
      maximumVolumeBytes: Math.min(this.maxBytes, Math.floor(availableBytes / MiB) * MiB),
      minimumVolumeBytes: this.sizing.minBytes(options),
    };
  }

  describe(volume: VolumeRecord): Record<string, unknown> {
    return {
      size:
        typeof volume.fields.sizeBytes === 'number'
          ? formatSize(volume.fields.sizeBytes)
          : volume.options.size,
      fsType: volume.options.fsType,
      image: this.imageOf(volume),
    };
  }

  async doctor(): Promise<DoctorCheck[]> {
    const checks: DoctorCheck[] = [];
    for (const tool of ['losetup', 'mkfs.ext4', 'blkid']) {
      const ok = await this.ctx.mounter.hasTool(tool);
      checks.push({
        name: `local: ${tool}`,
        ok,
        detail: ok
          ? 'found'
          : `missing; apt-get install ${tool === 'mkfs.ext4' ? 'e2fsprogs' : 'util-linux mount'}`,
      });
    }
    const xfs = await this.ctx.mounter.hasTool('mkfs.xfs');
    checks.push({
      name: 'local: mkfs.xfs',
      ok: true,
      detail: xfs
        ? 'found (fsType=xfs available)'
        : 'absent (fsType=xfs unavailable; apt-get install xfsprogs)',
    });
    return checks;
  }

  private imagePath(name: string): string {
    return join(this.cfg.imageDir, `${name}.img`);
  }

  /** Where Create builds the image before linking it into place; never adopted. */
  private partialPath(name: string): string {
    return join(this.cfg.imageDir, `.${name}.img.partial`);
  }

  private imageOf(volume: VolumeRecord): string {
    return typeof volume.fields.image === 'string' ? volume.fields.image : this.imagePath(volume.name);
  }
}

const MiB = 1024 ** 2;

/** `path`, or its closest ancestor that exists (the image directory is made at the first Create). */
async function nearestExisting(path: string): Promise<string> {
  let p = path;
  while (!(await statOrUndefined(p)) && dirname(p) !== p) p = dirname(p);
  return p;
}

async function statOrUndefined(path: string) {
  try {
    return await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function unlinkIfPresent(path: string): Promise<void> {
  await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
}
