import { stat } from 'node:fs/promises';

/**
 * Device numbers as mountinfo shows them (`major:minor`, its third field): every mount of one
 * filesystem carries the number of the device under it, whatever name the device was mounted by.
 */

/**
 * `major:minor` of a device number as Linux hands it to user space (`st_rdev`, `st_dev`): the low
 * 8 bits of the minor, then the 12 bits of the major, then the rest of the minor. The kernel's
 * numbers have 12 bits of major and 20 of minor, so nothing lies above bit 31.
 */
export function majorMinor(dev: number): string {
  const major = Math.floor(dev / 0x100) & 0xfff;
  const minor = (dev & 0xff) | (Math.floor(dev / 0x1000) & ~0xff);
  return `${major}:${minor}`;
}

/** The `major:minor` of the block device at `path` (links followed); undefined when it is none. */
export async function blockDeviceNumber(path: string): Promise<string | undefined> {
  const st = await stat(path).catch(() => undefined);
  return st?.isBlockDevice() ? majorMinor(st.rdev) : undefined;
}
