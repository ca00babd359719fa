import { readFileSync, statSync } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { StowageError } from '../base/errors.js';
import { blockDeviceNumber } from './device-number.js';
import type { CommandRunner } from './exec.js';
import { type MountEntry, parseMountInfo } from './mountinfo.js';
import { nfsMountRefusal } from './nfs-refusal.js';

export interface MountOptions {
  fsType?: string;
  options?: readonly string[];
  timeoutMs?: number;
}

/** Everything stowage does to the kernel's mount table and to block devices' filesystems. */
export interface Mounter {
  mount(source: string, target: string, opts?: MountOptions): Promise<void>;
  /**
   * Unmounting something that is not mounted succeeds. `lazy` detaches a busy/hung mount.
   * `freeLoopDevice`: when what was mounted there is a loop device, umount frees it too (`-d`; the
   * kernel defers that while something else still holds the device).
   */
  unmount(target: string, opts?: UnmountOptions): Promise<void>;
  listMounts(): Promise<MountEntry[]>;
  isMountPoint(target: string): Promise<boolean>;
  /**
   * The mounts here that show the filesystem on `device`: those mounted by its name or by the
   * name it resolves to (a /dev/xvdf link to /dev/nvme1n1), and those carrying its major:minor
   * (bind mounts, mounts through any other name of it). Empty when it is mounted nowhere.
   */
  mountsOfDevice(device: string): Promise<MountEntry[]>;
  /** The filesystem type on a device, or null when blkid finds none (blank device). */
  probeFilesystem(device: string): Promise<string | null>;
  makeFilesystem(device: string, fsType: string): Promise<void>;
  isBlockDevice(path: string): Promise<boolean>;
  hasTool(name: string): Promise<boolean>;
  /** The size of a block device in bytes, as the kernel sees it now. */
  deviceSize(device: string): Promise<number>;
  /**
   * Grows the filesystem on `device` to the size of the device. With `mountpoint` (where it is
   * mounted) online: `resize2fs` (ext4), `xfs_growfs` (xfs). Without, offline: ext4 only, on an
   * unmounted filesystem that checkFilesystem has just checked. A filesystem that already fills
   * its device is success.
   */
  growFilesystem(device: string, fsType: string, opts?: { mountpoint?: string }): Promise<void>;
  /** `e2fsck -f -y` of an unmounted ext4 filesystem: repairs what it can, fails on what it cannot. */
  checkFilesystem(device: string, fsType: string): Promise<void>;
}

export interface UnmountOptions {
  lazy?: boolean;
  timeoutMs?: number;
  freeLoopDevice?: boolean;
}

export interface LinuxMounterOptions {
  commandTimeoutMs: number;
  mkfsTimeoutMs: number;
  mountInfoPath?: string;
}

/** Mounts of a server's export: their failures are explained by nfsMountRefusal. */
const NETWORK_FS = new Set(['nfs', 'nfs4', 'efs']);

export const SUPPORTED_FS_TYPES = ['ext4', 'xfs'] as const;

export class LinuxMounter implements Mounter {
  constructor(
    private readonly runner: CommandRunner,
    private readonly opts: LinuxMounterOptions,
  ) {}

  async mount(source: string, target: string, opts: MountOptions = {}): Promise<void> {
    const args: string[] = [];
    if (opts.fsType) args.push('-t', opts.fsType);
    if (opts.options?.length) args.push('-o', opts.options.join(','));
    args.push('--', source, target);
    try {
      await this.runner.run('mount', args, {
        timeoutMs: opts.timeoutMs ?? this.opts.commandTimeoutMs,
        what: `mount of ${source} on ${target}`,
      });
    } catch (err) {
      throw NETWORK_FS.has(opts.fsType ?? '') ? nfsMountRefusal(source, err) : err;
    }
  }

  async unmount(target: string, opts: UnmountOptions = {}): Promise<void> {
    if (!(await this.isMountPoint(target))) return;
    const args = [...(opts.lazy ? ['-l'] : []), ...(opts.freeLoopDevice ? ['-d'] : []), '--', target];
    await this.runner.run('umount', args, {
      timeoutMs: opts.timeoutMs ?? this.opts.commandTimeoutMs,
      what: `unmount of ${target}`,
    });
  }

  async listMounts(): Promise<MountEntry[]> {
    // Read synchronously: procfs answers from memory (it never waits on a device or a server), and
    // an async read is four trips through libuv's thread pool, about 1 ms on a busy host, paid
    // twice on every Mount + Unmount.
    return parseMountInfo(readFileSync(this.opts.mountInfoPath ?? '/proc/self/mountinfo', 'utf8'));
  }

  async isMountPoint(target: string): Promise<boolean> {
    const wanted = resolve(target); // mountinfo paths carry no trailing slash
    const mounts = await this.listMounts();
    return mounts.some((m) => m.mountPoint === wanted);
  }

  async mountsOfDevice(device: string): Promise<MountEntry[]> {
    const names = new Set([device, await realpath(device).catch(() => device)]);
    const number = await blockDeviceNumber(device);
    return (await this.listMounts()).filter((m) => names.has(m.source) || m.majorMinor === number);
  }

  async probeFilesystem(device: string): Promise<string | null> {
    // -p: low-level probe, ignoring blkid's cache (a device just attached must not be read from it).
    const res = await this.runner.run('blkid', ['-p', '-s', 'TYPE', '-o', 'value', '--', device], {
      timeoutMs: this.opts.commandTimeoutMs,
      okExitCodes: [2],
      what: `blkid of ${device}`,
    });
    if (res.exitCode === 2) return null;
    const type = res.stdout.trim();
    return type === '' ? null : type;
  }

  async makeFilesystem(device: string, fsType: string): Promise<void> {
    let args: string[];
    if (fsType === 'ext4') args = ['-q', '-F', '--', device];
    else if (fsType === 'xfs') args = ['-q', '--', device];
    else throw new StowageError('INVALID_ARGUMENT', `cannot format ${device} as ${fsType}: use ext4 or xfs`);
    await this.runner.run(`mkfs.${fsType}`, args, {
      timeoutMs: this.opts.mkfsTimeoutMs,
      what: `mkfs.${fsType} of ${device}`,
    });
  }

  async deviceSize(device: string): Promise<number> {
    if (!device.startsWith('/')) throw new StowageError('INVALID_ARGUMENT', `not a device path: ${device}`);
    // blockdev takes no "--"; an absolute path cannot be taken for an option.
    const res = await this.runner.run('blockdev', ['--getsize64', device], {
      timeoutMs: this.opts.commandTimeoutMs,
      what: `blockdev of ${device}`,
    });
    const text = res.stdout.trim();
    const bytes = /^\d+$/.test(text) ? Number(text) : Number.NaN;
    if (!Number.isSafeInteger(bytes)) {
      throw new StowageError(
        'INTERNAL',
        `blockdev gave no size for ${device}: ${JSON.stringify(res.stdout)}`,
      );
    }
    return bytes;
  }

  async growFilesystem(device: string, fsType: string, opts: { mountpoint?: string } = {}): Promise<void> {
    // Long work on a big filesystem: the mkfs deadline, not the one of a quick command.
    const timeoutMs = this.opts.mkfsTimeoutMs;
    const how = opts.mountpoint === undefined ? 'offline' : 'online';
    if (fsType === 'ext4') {
      await this.runner.run('resize2fs', ['--', device], {
        timeoutMs,
        what: `${how} resize2fs of ${device}`,
      });
    } else if (fsType === 'xfs' && opts.mountpoint !== undefined) {
      await this.runner.run('xfs_growfs', ['--', opts.mountpoint], {
        timeoutMs,
        what: `xfs_growfs of ${opts.mountpoint}`,
      });
    } else {
      throw new StowageError(
        'NOT_SUPPORTED',
        fsType === 'xfs'
          ? `xfs grows only while mounted; ${device} is not`
          : `cannot grow a ${fsType} filesystem (${device}): only ext4 and xfs`,
      );
    }
  }

  async checkFilesystem(device: string, fsType: string): Promise<void> {
    if (fsType !== 'ext4') {
      throw new StowageError(
        'NOT_SUPPORTED',
        `cannot check a ${fsType} filesystem (${device}) here: only ext4`,
      );
    }
    // Exit 1: errors were found and corrected, the filesystem is consistent now.
    await this.runner.run('e2fsck', ['-f', '-y', '--', device], {
      timeoutMs: this.opts.mkfsTimeoutMs,
      okExitCodes: [1],
      what: `e2fsck of ${device}`,
    });
  }

  async isBlockDevice(path: string): Promise<boolean> {
    // A device node: stat'ed synchronously, like procfs, since devtmpfs answers from memory; the
    // mount pipeline asks this before every mount of a block volume.
    try {
      return statSync(path).isBlockDevice();
    } catch {
      return false;
    }
  }

  async hasTool(name: string): Promise<boolean> {
    for (const dir of ['/usr/sbin', '/sbin', '/usr/bin', '/bin']) {
      try {
        const s = await stat(`${dir}/${name}`);
        if (s.isFile()) return true;
      } catch {
        // not in this directory
      }
    }
    return false;
  }
}
