import type { VolumeRecord } from '../../src/index.js';

/**
 * What Remove will do to an EFS volume's storage under its policy, in words (shown by `describe`
 * and logged when data is kept): which access point, directory, mount targets and file system go
 * or stay, and that a kept access point is taken again by the next Create of the same name.
 */
export function removeEffect(volume: VolumeRecord): string {
  const f = volume.fields;
  const fsId = String(f.fileSystemId);
  const ap = typeof f.accessPointId === 'string' ? f.accessPointId : undefined;
  const ownAp = ap !== undefined && f.createdAccessPoint === true;
  const ownFs = f.createdFileSystem === true;
  const dir = typeof f.remotePath === 'string' ? f.remotePath : '/';
  if (volume.removePolicy === 'delete') {
    const steps: string[] = [];
    if (ownAp) steps.push(`deletes access point ${ap}`);
    if (ownFs) steps.push(`deletes the mount targets and file system ${fsId} with all its data`);
    else if (typeof f.subdir === 'string')
      steps.push(`deletes directory ${dir} on ${fsId} with its contents`);
    const kept = ap !== undefined && !ownAp ? `; keeps access point ${ap} (not made by stowage)` : '';
    return `delete: ${steps.join(', then ') || 'deletes nothing'}${kept}`;
  }
  const kept: string[] = [];
  if (ap !== undefined) kept.push(`access point ${ap}${ownAp ? '' : ' (not made by stowage)'}`);
  kept.push(ap !== undefined && !ownAp ? 'its data' : `directory ${dir}`);
  if (ownFs) kept.push(`file system ${fsId} and its mount targets (still billed)`);
  // A created file system is never reused (a new Create makes a new one), so neither is its access point.
  const reuse =
    ownAp && !ownFs
      ? `; the next Create of ${volume.name} on ${fsId} at ${dir} with the same uid/gid reuses the access point`
      : '';
  return `retain: keeps ${kept.join(', ')}${reuse}`;
}
