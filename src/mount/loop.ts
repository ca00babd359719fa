import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { StowageError } from '../base/errors.js';
import type { CommandRunner } from './exec.js';

/** Loop devices: how the local driver turns an image file into a block device ("attach"). */
export interface LoopDevices {
  attach(file: string): Promise<string>;
  detach(device: string): Promise<void>;
  /** Loop devices currently backed by `file`. */
  findByFile(file: string): Promise<string[]>;
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

export class LosetupLoopDevices implements LoopDevices {
  constructor(
    private readonly runner: CommandRunner,
    private readonly timeoutMs: number,
  ) {}

  async attach(file: string): Promise<string> {
    const res = await this.runner.run('losetup', ['--find', '--show', '--', file], {
      timeoutMs: this.timeoutMs,
      what: `losetup of ${file}`,
    });
    return res.stdout.trim();
  }

  async detach(device: string): Promise<void> {
    await this.runner.run('losetup', ['--detach', device], {
      timeoutMs: this.timeoutMs,
      what: `losetup -d ${device}`,
    });
  }

  /**
   * Matched by the file's identity, not its path: the kernel keeps the path as seen in the mount
   * namespace that attached the device, so after stowage's container is replaced (another mount
   * namespace, maybe another path to the same directory) a path match would miss the device,
   * and the next attach would set up a second one and leak the first. A file recreated under the
   * same path is another inode and is not mistaken for the old one.
   */
  async findByFile(file: string): Promise<string[]> {
    const path = resolve(file);
    const st = await stat(path, { bigint: true }).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (!st) return []; // no file, nothing can be backed by it (a deleted one shows another inode)
    const res = await this.runner.run('losetup', LOSETUP_LIST_ARGS, {
      timeoutMs: this.timeoutMs,
      what: `losetup --list (loop devices of ${path})`,
    });
    return devicesBacking(parseLosetupList(res.stdout), path, {
      majMin: majMinOf(st.dev),
      ino: Number(st.ino),
    });
  }
}
