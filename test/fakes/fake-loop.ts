import { stat } from 'node:fs/promises';
import type { LoopDevices } from '../../src/mount/loop.js';
import { FailureQueue, type FakeDisk, type FakeMounter } from './fake-mounter.js';

export interface LoopCall {
  op: 'attach' | 'detach' | 'findByFile';
  /** The file (attach, findByFile) or the device (detach). */
  path: string;
}

/**
 * Loop devices over the fake kernel of a FakeMounter. attach() takes the lowest free /dev/loopN,
 * as `losetup --find` does, and registers it as a block device whose contents are the backing
 * file's, so the mount pipeline's wait-for-device and blkid see it, and a filesystem made on it
 * is still there after detach and a later attach.
 */
export class FakeLoopDevices implements LoopDevices {
  readonly calls: LoopCall[] = [];
  /** device -> backing file. */
  private readonly backing = new Map<string, string>();
  /** backing file -> its contents (what a loop device over it shows). */
  private readonly disks = new Map<string, FakeDisk>();
  private readonly failures = new FailureQueue<'attach' | 'detach'>();

  constructor(private readonly mounter: FakeMounter) {}

  // --- test controls -------------------------------------------------------------------------

  failNext(op: 'attach' | 'detach', err: Error): void {
    this.failures.push(op, err);
  }

  /** The contents of `file` as a loop device would show them; set `.fsType` to preset data. */
  diskOf(file: string): FakeDisk {
    let disk = this.disks.get(file);
    if (!disk) {
      disk = { fsType: null };
      this.disks.set(file, disk);
    }
    return disk;
  }

  /** Attached loop devices as [device, backing file], sorted by device. */
  attached(): [string, string][] {
    return [...this.backing].sort(([a], [b]) => a.localeCompare(b));
  }

  count(op: LoopCall['op']): number {
    return this.calls.filter((c) => c.op === op).length;
  }

  // --- LoopDevices ---------------------------------------------------------------------------

  async attach(file: string): Promise<string> {
    this.calls.push({ op: 'attach', path: file });
    this.failures.take('attach');
    // losetup needs the file to exist; the local driver creates real (sparse) files in a temp dir.
    const st = await stat(file).catch(() => undefined);
    if (!st?.isFile())
      throw new Error(`losetup: ${file}: failed to set up loop device: No such file or directory`);
    let n = 0;
    while (this.backing.has(`/dev/loop${n}`)) n++;
    const device = `/dev/loop${n}`;
    this.backing.set(device, file);
    this.mounter.addBlockDevice(device, this.diskOf(file));
    return device;
  }

  async detach(device: string): Promise<void> {
    this.calls.push({ op: 'detach', path: device });
    this.failures.take('detach');
    if (!this.backing.has(device))
      throw new Error(`losetup: ${device}: detach failed: No such device or address`);
    // Linux would defer this (autoclear); a detach before the unmount is an ordering bug in stowage.
    if (this.mounter.isDeviceMounted(device)) throw new Error(`fake losetup: ${device} is still mounted`);
    this.backing.delete(device);
    this.mounter.removeBlockDevice(device);
  }

  async findByFile(file: string): Promise<string[]> {
    this.calls.push({ op: 'findByFile', path: file });
    return this.attached()
      .filter(([, f]) => f === file)
      .map(([device]) => device);
  }
}
