import { relative } from 'node:path';
import { StowageError } from '../../src/base/errors.js';
import type { Mounter, MountOptions } from '../../src/mount/mounter.js';
import type { MountEntry } from '../../src/mount/mountinfo.js';

/**
 * An in-memory kernel for unit tests: a mount table, a set of block devices and what is on them.
 * It is stricter than Linux where leniency would hide a stowage bug (it refuses to stack a second
 * mount on a mount point, to format or detach a mounted device, and to mount a device with the
 * wrong filesystem type), so a test that passes here does not rely on luck with the real kernel.
 */

/**
 * The contents of a block device. A loop device shares the object of its backing file, so what
 * mkfs wrote is still there after detach and re-attach, as with a real image file.
 */
export interface FakeDisk {
  /** Filesystem type blkid would report; null for a blank device. */
  fsType: string | null;
  /** Size of the device (default 1 GiB); a test grows it as the cloud would. */
  sizeBytes?: number;
  /** Size of the filesystem on it: the device's at mkfs, then what growFilesystem made it. */
  fsSizeBytes?: number;
  /** Checked (fsck) since it was last mounted: what an offline resize2fs insists on. */
  checked?: boolean;
}

export const FAKE_DISK_BYTES = 1024 ** 3;

export interface FakeMountEntry {
  source: string;
  fsType: string;
  options: string[];
  /** For a bind mount: the directory of the filesystem it shows (`/` is the whole filesystem). */
  root?: string;
}

export type MounterOp =
  | 'mount'
  | 'unmount'
  | 'mkfs'
  | 'probe'
  | 'listMounts'
  | 'isMountPoint'
  | 'mountsOfDevice'
  | 'isBlockDevice'
  | 'hasTool'
  | 'deviceSize'
  | 'resize'
  | 'fsck';

export interface MounterCall {
  op: MounterOp;
  /** The path the call was about (target, device or tool name); '' for listMounts. */
  path: string;
  /** The rest of the arguments as they were passed. */
  detail?: unknown;
}

/** Errors queued per operation: each call of that operation takes (and throws) the next one. */
export class FailureQueue<Op extends string> {
  private readonly queues = new Map<Op, Error[]>();

  push(op: Op, err: Error): void {
    const q = this.queues.get(op) ?? [];
    q.push(err);
    this.queues.set(op, q);
  }

  /** Throws the next queued error for `op`, if there is one. */
  take(op: Op): void {
    const err = this.queues.get(op)?.shift();
    if (err) throw err;
  }

  pending(op: Op): number {
    return this.queues.get(op)?.length ?? 0;
  }
}

/**
 * Holds one call in flight until the test lets it go: `reached` resolves when the call arrived,
 * `release()` lets it continue. Lets a test run something else "while a mount is in progress"
 * without sleeping.
 */
export class Gate {
  readonly reached: Promise<void>;
  private readonly opened: Promise<void>;
  private markReached!: () => void;
  private open!: () => void;

  constructor() {
    this.reached = new Promise<void>((r) => (this.markReached = r));
    this.opened = new Promise<void>((r) => (this.open = r));
  }

  release(): void {
    this.open();
  }

  /** Called by the fake when the held call arrives. */
  async pass(): Promise<void> {
    this.markReached();
    await this.opened;
  }
}

type HeldOp = 'mount' | 'unmount' | 'mkfs';
type FailingOp = 'mount' | 'unmount' | 'mkfs' | 'probe' | 'resize' | 'fsck';

export class FakeMounter implements Mounter {
  /** target -> what is mounted there. */
  readonly table = new Map<string, FakeMountEntry>();
  /** NFS servers that answer: server name -> local directory standing in for its filesystem root. */
  readonly nfsServers = new Map<string, string>();
  /** Every call in order, including the read-only ones and those that failed. */
  readonly calls: MounterCall[] = [];
  /** Tools hasTool() reports as installed. */
  readonly tools = new Set(['mkfs.ext4', 'mkfs.xfs', 'losetup', 'blkid']);
  private readonly devices = new Map<string, FakeDisk>();
  private readonly failures = new FailureQueue<FailingOp>();
  /** source -> the fake device id mountinfo shows for it (`240:N`), stable for the test. */
  private readonly deviceIds = new Map<string, string>();
  private readonly holds: { op: HeldOp; path: string | undefined; gate: Gate }[] = [];

  // --- test controls -------------------------------------------------------------------------

  /** The next call of `op` throws `err` (calls queue up: two failNext make two calls fail). */
  failNext(op: FailingOp, err: Error): void {
    this.failures.push(op, err);
  }

  /** The next call of `op` (on `path`, when given) waits until the returned gate is released. */
  holdNext(op: HeldOp, path?: string): Gate {
    const gate = new Gate();
    this.holds.push({ op, path, gate });
    return gate;
  }

  /** Makes `path` a block device; returns its contents so a test can look at or preset them. */
  addBlockDevice(path: string, disk: FakeDisk = { fsType: null }): FakeDisk {
    this.devices.set(path, disk);
    return disk;
  }

  removeBlockDevice(path: string): void {
    this.devices.delete(path);
  }

  blockDevices(): string[] {
    return [...this.devices.keys()].sort();
  }

  /** The filesystem on `device` (null: blank), or undefined when there is no such device. */
  filesystemOf(device: string): string | null | undefined {
    return this.devices.get(device)?.fsType;
  }

  isDeviceMounted(device: string): boolean {
    return [...this.table.values()].some((e) => e.source === device);
  }

  /** Drops a mount from the table without a call, as a reboot or a manual `umount` would. */
  vanish(target: string): void {
    if (!this.table.delete(target)) throw new Error(`fake: nothing is mounted on ${target}`);
  }

  count(op: MounterOp): number {
    return this.calls.filter((c) => c.op === op).length;
  }

  callsOf(op: MounterOp): MounterCall[] {
    return this.calls.filter((c) => c.op === op);
  }

  // --- Mounter -------------------------------------------------------------------------------

  async mount(source: string, target: string, opts: MountOptions = {}): Promise<void> {
    this.calls.push({ op: 'mount', path: target, detail: { source, ...opts } });
    await this.pause('mount', target);
    this.failures.take('mount');
    if (this.table.has(target)) {
      throw new Error(`fake mount: ${target} is already a mount point; stowage must not stack mounts`);
    }
    if (opts.options?.includes('bind')) {
      this.bind(source, target, opts.options);
      return;
    }
    if (opts.fsType === 'nfs' || opts.fsType === 'nfs4') {
      const server = source.slice(0, source.indexOf(':'));
      if (!this.nfsServers.has(server)) {
        // What the real runner reports when mount.nfs waits for a server that never answers.
        throw new StowageError(
          'TIMEOUT',
          `mount of ${source} on ${target} did not finish within ${opts.timeoutMs} ms and was killed`,
        );
      }
      this.table.set(target, { source, fsType: opts.fsType, options: [...(opts.options ?? [])] });
      return;
    }
    const disk = this.devices.get(source);
    if (!disk) throw new Error(`mount: ${target}: special device ${source} does not exist.`);
    if (disk.fsType === null || (opts.fsType !== undefined && opts.fsType !== disk.fsType)) {
      throw new Error(`mount: ${target}: wrong fs type, bad option, bad superblock on ${source}`);
    }
    this.table.set(target, { source, fsType: disk.fsType, options: [...(opts.options ?? [])] });
    disk.checked = false;
  }

  async unmount(target: string, opts: { lazy?: boolean; timeoutMs?: number } = {}): Promise<void> {
    this.calls.push({ op: 'unmount', path: target, detail: opts });
    await this.pause('unmount', target);
    this.failures.take('unmount');
    // Not mounted is success, as the interface promises.
    this.table.delete(target);
  }

  async listMounts(): Promise<MountEntry[]> {
    this.calls.push({ op: 'listMounts', path: '' });
    return this.entries();
  }

  async isMountPoint(target: string): Promise<boolean> {
    this.calls.push({ op: 'isMountPoint', path: target });
    return this.table.has(target);
  }

  /** By the device's name, or by the fake device id that its bind mounts share with it. */
  async mountsOfDevice(device: string): Promise<MountEntry[]> {
    this.calls.push({ op: 'mountsOfDevice', path: device });
    const id = this.devices.has(device) ? this.deviceId(device) : undefined;
    return this.entries().filter((m) => m.source === device || m.majorMinor === id);
  }

  async probeFilesystem(device: string): Promise<string | null> {
    this.calls.push({ op: 'probe', path: device });
    this.failures.take('probe');
    const disk = this.devices.get(device);
    if (!disk) throw new Error(`blkid: ${device}: no such device`);
    return disk.fsType;
  }

  async makeFilesystem(device: string, fsType: string): Promise<void> {
    this.calls.push({ op: 'mkfs', path: device, detail: { fsType } });
    await this.pause('mkfs', device);
    this.failures.take('mkfs');
    const disk = this.devices.get(device);
    if (!disk) throw new Error(`mkfs.${fsType}: ${device}: no such device`);
    if (this.isDeviceMounted(device))
      throw new Error(`mkfs.${fsType}: ${device} is mounted; will not make a filesystem`);
    if (fsType !== 'ext4' && fsType !== 'xfs') {
      // The same refusal as LinuxMounter, so a driver asking for another type fails the same way.
      throw new StowageError('INVALID_ARGUMENT', `cannot format ${device} as ${fsType}: use ext4 or xfs`);
    }
    disk.fsType = fsType;
    disk.fsSizeBytes = disk.sizeBytes ?? FAKE_DISK_BYTES;
  }

  async isBlockDevice(path: string): Promise<boolean> {
    this.calls.push({ op: 'isBlockDevice', path });
    return this.devices.has(path);
  }

  async hasTool(name: string): Promise<boolean> {
    this.calls.push({ op: 'hasTool', path: name });
    return this.tools.has(name);
  }

  async deviceSize(device: string): Promise<number> {
    this.calls.push({ op: 'deviceSize', path: device });
    const disk = this.devices.get(device);
    if (!disk) throw new Error(`blockdev: cannot open ${device}: No such file or directory`);
    return disk.sizeBytes ?? FAKE_DISK_BYTES;
  }

  async growFilesystem(device: string, fsType: string, opts: { mountpoint?: string } = {}): Promise<void> {
    this.calls.push({ op: 'resize', path: device, detail: { fsType, ...opts } });
    this.failures.take('resize');
    const disk = this.devices.get(device);
    if (!disk) throw new Error(`resize2fs: No such file or directory while trying to open ${device}`);
    if (disk.fsType !== fsType) throw new Error(`fake resize: ${device} has ${disk.fsType}, not ${fsType}`);
    if (opts.mountpoint !== undefined) {
      if (this.table.get(opts.mountpoint)?.source !== device) {
        throw new Error(`fake resize: ${device} is not mounted on ${opts.mountpoint}`);
      }
    } else {
      if (this.isDeviceMounted(device)) {
        throw new Error(`fake resize: offline resize of ${device}, which is mounted (bind mounts count)`);
      }
      if (!disk.checked) throw new Error(`resize2fs: Please run 'e2fsck -f ${device}' first.`);
    }
    disk.fsSizeBytes = disk.sizeBytes ?? FAKE_DISK_BYTES;
  }

  async checkFilesystem(device: string, fsType: string): Promise<void> {
    this.calls.push({ op: 'fsck', path: device, detail: { fsType } });
    this.failures.take('fsck');
    const disk = this.devices.get(device);
    if (!disk) throw new Error(`e2fsck: No such file or directory while trying to open ${device}`);
    if (this.isDeviceMounted(device)) {
      // Stricter than e2fsck (which only warns): checking a mounted filesystem corrupts it.
      throw new Error(`fake e2fsck: ${device} is mounted; it must never be checked while mounted`);
    }
    if (disk.fsType !== fsType) throw new Error(`fake e2fsck: ${device} has ${disk.fsType}, not ${fsType}`);
    disk.checked = true;
  }

  /** A bind mount shows the filesystem under `source` (a mount point or a directory in one). */
  private bind(source: string, target: string, options: readonly string[]): void {
    const base = [...this.table.keys()]
      .filter((m) => source === m || source.startsWith(`${m}/`))
      .sort((a, b) => b.length - a.length)[0];
    const under = base === undefined ? undefined : this.table.get(base);
    if (base === undefined || !under) {
      throw new Error(`fake mount: bind of ${source}, which is in no mounted filesystem of the fake`);
    }
    const sub = relative(base, source);
    const root = under.root ?? '/';
    this.table.set(target, {
      source: under.source,
      fsType: under.fsType,
      options: [...options],
      root: sub === '' ? root : `${root === '/' ? '' : root}/${sub}`,
    });
  }

  /** The table as mountinfo would show it. */
  private entries(): MountEntry[] {
    return [...this.table].map(([mountPoint, e]) => ({
      mountPoint,
      source: e.source,
      fsType: e.fsType,
      options: e.options.length > 0 ? e.options.join(',') : 'rw',
      majorMinor: this.deviceId(e.source),
      root: e.root ?? '/',
    }));
  }

  private deviceId(source: string): string {
    let id = this.deviceIds.get(source);
    if (!id) {
      id = `${this.devices.has(source) ? 240 : 0}:${this.deviceIds.size + 1}`; // 240: no real device's major
      this.deviceIds.set(source, id);
    }
    return id;
  }

  private async pause(op: HeldOp, path: string): Promise<void> {
    const i = this.holds.findIndex((h) => h.op === op && (h.path === undefined || h.path === path));
    if (i < 0) return;
    const [hold] = this.holds.splice(i, 1);
    await hold?.gate.pass();
  }
}
