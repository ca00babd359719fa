import { readdirSync, readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { StowageError } from '../base/errors.js';
import type { CommandRunner } from './exec.js';

/** Loop devices: how the local driver turns an image file into a block device ("attach"). */
export interface LoopDevices {
  attach(file: string): Promise<string>;
  detach(device: string): Promise<void>;
  /**
   * Loop devices currently backed by `file`. `recorded`: the device the store says stowage set up
   * for it on this host, which lets the kernel's answer be trusted without a second opinion.
   */
  findByFile(file: string, recorded?: string): Promise<string[]>;
}

/** One loop device as `losetup --list --json` shows it. */
export interface LoopDeviceInfo {
  name: string;
  /** The path as seen in the mount namespace that set the device up; may not exist in ours. */
  backFile: string | undefined;
  /** The backing file's identity: inode and the `major:minor` of its filesystem. */
  backIno: number | undefined;
  backMajMin: string | undefined;
}

/** The identity of a file: the device of its filesystem and its inode, the same in every namespace. */
export interface FileIdentity {
  majMin: string;
  ino: number;
}

export const LOSETUP_LIST_ARGS = ['--list', '--json', '--output', 'NAME,BACK-FILE,BACK-INO,BACK-MAJ:MIN'];

/**
 * Parses `losetup --list --json --output NAME,BACK-FILE,BACK-INO,BACK-MAJ:MIN`. util-linux 2.38
 * pads `back-maj:min` with spaces ("     254:0  "); versions differ in numbers vs strings; with no
 * loop device some print nothing at all.
 */
export function parseLosetupList(stdout: string): LoopDeviceInfo[] {
  if (stdout.trim() === '') return [];
  let doc: unknown;
  try {
    doc = JSON.parse(stdout);
  } catch (err) {
    throw new StowageError('INTERNAL', `losetup --list --json printed no JSON: ${(err as Error).message}`);
  }
  const list = (doc as { loopdevices?: unknown }).loopdevices;
  if (!Array.isArray(list)) return [];
  const out: LoopDeviceInfo[] = [];
  for (const raw of list as Record<string, unknown>[]) {
    const name = text(raw.name);
    if (!name) continue;
    const ino = text(raw['back-ino']);
    out.push({
      name,
      backFile: text(raw['back-file']),
      backIno: ino !== undefined && /^\d+$/.test(ino) ? Number(ino) : undefined,
      backMajMin: text(raw['back-maj:min']),
    });
  }
  return out;
}

function text(v: unknown): string | undefined {
  if (typeof v === 'number') return String(v);
  if (typeof v !== 'string') return undefined;
  const t = v.trim();
  return t === '' ? undefined : t;
}

/** Linux's `dev_t` (as stat gives it) as `major:minor`: glibc's major() and minor(). */
export function majMinOf(dev: bigint): string {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & 0xfffff000n);
  const minor = (dev & 0xffn) | ((dev >> 12n) & 0xffffff00n);
  return `${major}:${minor}`;
}

/**
 * The devices among `devices` that are backed by the file with `identity`. The identity decides;
 * the path is compared only when losetup gives no identity (an older util-linux).
 */
export function devicesBacking(
  devices: readonly LoopDeviceInfo[],
  file: string,
  identity: FileIdentity,
): string[] {
  return devices
    .filter((d) =>
      d.backIno !== undefined && d.backMajMin !== undefined
        ? d.backIno === identity.ino && d.backMajMin === identity.majMin
        : d.backFile === file,
    )
    .map((d) => d.name);
}

/** Where the kernel shows each bound loop device's backing file: `<root>/loopN/loop/backing_file`. */
export const SYS_BLOCK = '/sys/block';

/** The kernel's mark on a backing file's path whose directory entry was unlinked. */
const DELETED = ' (deleted)';

/**
 * The loop devices the kernel shows in sysfs as backed by the file with `identity` (of
 * `sizeBytes` bytes), found without a process: each bound device's `loop/backing_file` (a path) is
 * looked up here and compared by inode and filesystem. A device whose path cannot be looked up
 * here (another mount namespace's path that this one lacks, or a deleted file) is ruled out only
 * by its size: a loop device over a file is as big as the file, in whole sectors (stowage sets no
 * offset or size limit, and a local image never changes size while attached). Undefined when
 * some device remains that cannot be judged this way: then only losetup, which asks the kernel
 * for the backing inode itself, can tell.
 */
export async function loopDevicesFromSysfs(
  sysBlock: string,
  identity: FileIdentity,
  sizeBytes: number,
): Promise<string[] | undefined> {
  // sysfs is read synchronously: it answers from the kernel's memory and never waits, and the
  // thread pool's round trips would cost more than the reads. The backing files themselves are
  // stat'ed asynchronously: they may sit on a filesystem that can hang.
  const names = readdirSync(sysBlock).filter((n) => /^loop\d+$/.test(n));
  const verdicts = await Promise.all(
    names.map(async (name): Promise<boolean | undefined> => {
      const text = readSysfs(join(sysBlock, name, 'loop', 'backing_file'));
      if (text === undefined) return false; // not bound
      const path = text.replace(/\n$/, '');
      const st =
        path === '' || path.endsWith(DELETED)
          ? undefined
          : await stat(path, { bigint: true }).catch(() => undefined);
      if (st) return Number(st.ino) === identity.ino && majMinOf(st.dev) === identity.majMin;
      const sectors = Number(readSysfs(join(sysBlock, name, 'size'))?.trim());
      return sectors * 512 === sizeBytes - (sizeBytes % 512) ? undefined : false;
    }),
  );
  if (verdicts.includes(undefined)) return undefined;
  return names.filter((_, i) => verdicts[i]).map((n) => `/dev/${n}`);
}

/** A sysfs attribute's text; undefined when it does not exist (an unbound loop device has no loop/). */
function readSysfs(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export class LosetupLoopDevices implements LoopDevices {
  constructor(
    private readonly runner: CommandRunner,
    private readonly timeoutMs: number,
    /** sysfs' block directory; a test gives a directory shaped like it. */
    private readonly sysBlock: string = SYS_BLOCK,
  ) {}

  async attach(file: string): Promise<string> {
    const res = await this.runner.run('losetup', ['--find', '--show', '--', file], {
      timeoutMs: this.timeoutMs,
      what: `losetup of ${file}`,
    });
    return res.stdout.trim();
  }

  /** Frees `device`. One the kernel has freed meanwhile (an unmount's deferred free) is success. */
  async detach(device: string): Promise<void> {
    try {
      await this.runner.run('losetup', ['--detach', device], {
        timeoutMs: this.timeoutMs,
        what: `losetup -d ${device}`,
      });
    } catch (err) {
      const name = /^\/dev\/(loop\d+)$/.exec(device)?.[1];
      if (name && readSysfs(join(this.sysBlock, name, 'loop', 'backing_file')) === undefined) return;
      throw err;
    }
  }

  /**
   * Matched by the file's identity, not its path: the kernel keeps the path as seen in the mount
   * namespace that attached the device, so after stowage's container is replaced (another mount
   * namespace, maybe another path to the same directory) a path match would miss the device,
   * and the next attach would set up a second one and leak the first. A file recreated under the
   * same path is another inode and is not mistaken for the old one.
   *
   * Asked of sysfs first, without a process (this runs before every attach and detach): each bound
   * device's backing path is looked up here and compared by inode. That answer is taken when it is
   * "none" or exactly the `recorded` device; otherwise `losetup --list`, which reads the backing
   * inode itself from the kernel, decides. Why: a path the kernel shows may be another mount
   * namespace's view (a stowage container's), and there the same path can name a different file,
   * say another stack's volume of the same name. Trusting such a match would mount someone else's
   * data, so a device is reused or detached on sysfs' word alone only when the store names it too.
   * A bound device whose path cannot be looked up here (another namespace's path this one lacks,
   * or a deleted one) and whose size is the image's also sends the question to losetup.
   */
  async findByFile(file: string, recorded?: string): Promise<string[]> {
    const path = resolve(file);
    const st = await stat(path, { bigint: true }).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (!st) return []; // no file, nothing can be backed by it (a deleted one shows another inode)
    const identity = { majMin: majMinOf(st.dev), ino: Number(st.ino) };
    const seen = await loopDevicesFromSysfs(this.sysBlock, identity, Number(st.size)).catch(() => undefined);
    if (seen !== undefined && (seen.length === 0 || (seen.length === 1 && seen[0] === recorded))) {
      return seen;
    }
    const res = await this.runner.run('losetup', LOSETUP_LIST_ARGS, {
      timeoutMs: this.timeoutMs,
      what: `losetup --list (loop devices of ${path})`,
    });
    return devicesBacking(parseLosetupList(res.stdout), path, identity);
  }
}
