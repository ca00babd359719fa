import { isAbsolute, join, normalize } from 'node:path';
import { StowageError } from '../src/base/errors.js';
import { VENDOR } from './capabilities.js';

const COMPONENT = '([A-Za-z0-9][A-Za-z0-9_.-]{0,252})';

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function checked(path: string | undefined, what: string): string {
  if (!path) throw new StowageError('INVALID_ARGUMENT', `the ${what} argument is missing`);
  const trimmed = path.replace(/\/+$/, '');
  if (!isAbsolute(path) || normalize(trimmed) !== trimmed) {
    throw new StowageError(
      'PERMISSION_DENIED',
      `${what} ${JSON.stringify(path)} is not a clean absolute path`,
    );
  }
  return trimmed;
}

/**
 * A pod's volume directory as kubelet makes it: <kubelet>/pods/<podUID>/volumes/stowage~<driver>/<vol>.
 * Anything else is refused: the executable runs as root and must not mount over arbitrary paths.
 */
export function podVolumeDir(
  path: string | undefined,
  kubeletDir: string,
  driver: string,
): { path: string; podUid: string; volDir: string } {
  const p = checked(path, 'pod volume directory');
  const re = new RegExp(
    `^${escapeRe(kubeletDir)}/pods/${COMPONENT}/volumes/${escapeRe(`${VENDOR}~${driver}`)}/${COMPONENT}$`,
  );
  const m = re.exec(p);
  if (!m) {
    throw new StowageError(
      'PERMISSION_DENIED',
      `${p} is not a pod volume directory of this driver (${join(kubeletDir, 'pods', '<pod-uid>', 'volumes', `${VENDOR}~${driver}`, '<volume>')}); nothing was mounted there`,
    );
  }
  return { path: p, podUid: m[1]!, volDir: m[2]! };
}

/** kubelet's per-node mount of an attached volume: <kubelet>/plugins/kubernetes.io/flexvolume/stowage/<driver>/mounts/<name>. */
export function deviceMountPath(
  path: string | undefined,
  kubeletDir: string,
  driver: string,
): { path: string; volumeName: string } {
  const p = checked(path, 'device mount path');
  const base = join(kubeletDir, 'plugins', 'kubernetes.io', 'flexvolume', VENDOR, driver, 'mounts');
  const m = new RegExp(`^${escapeRe(base)}/${COMPONENT}$`).exec(p);
  if (!m) {
    throw new StowageError(
      'PERMISSION_DENIED',
      `${p} is not a device mount path of this driver (${base}/<volume>); nothing was mounted there`,
    );
  }
  return { path: p, volumeName: m[1]! };
}
