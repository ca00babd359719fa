/**
 * How mount and unmount events under a mount reach other mounts (and other mount namespaces):
 * `shared` ones propagate to the mount's peer group, a `slave` only receives from its master,
 * a `private` (or `unbindable`) one neither sends nor receives.
 */
export type Propagation = 'shared' | 'slave' | 'private';

export interface MountEntry {
  mountPoint: string;
  source: string;
  fsType: string;
  options: string;
  /** The filesystem's device id (`7:3`): every mount of one filesystem (bind mounts too) shares it. */
  majorMinor: string;
  /** The directory of the filesystem mounted here: `/`, or a subdirectory for a bind mount of one. */
  root: string;
  /**
   * From mountinfo's optional fields; `shared` also when the mount is a slave too (`shared:N
   * master:M`). Absent where the entry does not come from mountinfo (a fake mount table).
   */
  propagation?: Propagation;
  /** `shared:N`: the peer group that mount events here propagate to (ids are global to the kernel). */
  peerGroup?: number;
  /** `master:N`: the peer group this mount receives mount events from. */
  masterGroup?: number;
}

// Fields of /proc/self/mountinfo are space-separated with spaces, tabs, newlines and backslashes
// escaped as octal (\040 ...).
function unescapeOctal(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

/** Propagation from the optional fields between the mount options and the `-` separator. */
function propagationOf(
  optional: readonly string[],
): Pick<MountEntry, 'propagation' | 'peerGroup' | 'masterGroup'> {
  let peerGroup: number | undefined;
  let masterGroup: number | undefined;
  for (const field of optional) {
    const [tag, value] = field.split(':');
    const n = Number(value);
    if (!Number.isInteger(n)) continue;
    if (tag === 'shared') peerGroup = n;
    else if (tag === 'master') masterGroup = n;
  }
  return {
    propagation: peerGroup !== undefined ? 'shared' : masterGroup !== undefined ? 'slave' : 'private',
    ...(peerGroup !== undefined ? { peerGroup } : {}),
    ...(masterGroup !== undefined ? { masterGroup } : {}),
  };
}

/** Parses /proc/self/mountinfo; faster than spawning findmnt and present everywhere. */
export function parseMountInfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const parts = line.split(' ');
    const sep = parts.indexOf('-', 6);
    if (sep < 0 || parts.length < sep + 3) continue;
    out.push({
      mountPoint: unescapeOctal(parts[4]!),
      options: parts[5]!,
      fsType: parts[sep + 1]!,
      source: unescapeOctal(parts[sep + 2]!),
      majorMinor: parts[2]!,
      root: unescapeOctal(parts[3]!),
      ...propagationOf(parts.slice(6, sep)),
    });
  }
  return out;
}
