import { readFile, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { StowageError } from '../core/errors.js';
import type { CommandRunner } from './exec.js';
import { type MountEntry, parseMountInfo } from './mountinfo.js';

export interface MountOptions {
  fsType?: string;
  options?: readonly string[];
  timeoutMs?: number;
}

/** Everything stowage does to the kernel's mount table and to block devices' filesystems. */
export interface Mounter {
  mount(source: string, target: string, opts?: MountOptions): Promise<void>;
  /** Unmounting something that is not mounted succeeds. `lazy` detaches a busy/hung mount. */
  unmount(target: string, opts?: { lazy?: boolean; timeoutMs?: number }): Promise<void>;
  listMounts(): Promise<MountEntry[]>;
  isMountPoint(target: string): Promise<boolean>;
  /** The filesystem type on a device, or null when blkid finds none (blank device). */
  probeFilesystem(device: string): Promise<string | null>;
  makeFilesystem(device: string, fsType: string): Promise<void>;
  isBlockDevice(path: string): Promise<boolean>;
  hasTool(name: string): Promise<boolean>;
}

export interface LinuxMounterOptions {
  commandTimeoutMs: number;
  mkfsTimeoutMs: number;
  mountInfoPath?: string;
}

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
    await this.runner.run('mount', args, {
      timeoutMs: opts.timeoutMs ?? this.opts.commandTimeoutMs,
      what: `mount of ${source} on ${target}`,
    });
  }

  async unmount(target: string, opts: { lazy?: boolean; timeoutMs?: number } = {}): Promise<void> {
    if (!(await this.isMountPoint(target))) return;
    const args = opts.lazy ? ['-l', '--', target] : ['--', target];
    await this.runner.run('umount', args, {
      timeoutMs: opts.timeoutMs ?? this.opts.commandTimeoutMs,
      what: `unmount of ${target}`,
    });
  }

  async listMounts(): Promise<MountEntry[]> {
    return parseMountInfo(await readFile(this.opts.mountInfoPath ?? '/proc/self/mountinfo', 'utf8'));
  }

  async isMountPoint(target: string): Promise<boolean> {
    const wanted = resolve(target); // mountinfo paths carry no trailing slash
    const mounts = await this.listMounts();
    return mounts.some((m) => m.mountPoint === wanted);
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

  async isBlockDevice(path: string): Promise<boolean> {
    try {
      return (await stat(path)).isBlockDevice();
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
