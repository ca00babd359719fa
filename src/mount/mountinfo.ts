export interface MountEntry {
  mountPoint: string;
  source: string;
  fsType: string;
  options: string;
  /** The filesystem's device id (`7:3`): every mount of one filesystem (bind mounts too) shares it. */
  majorMinor: string;
  /** The directory of the filesystem mounted here: `/`, or a subdirectory for a bind mount of one. */
  root: string;
}

// Fields of /proc/self/mountinfo are space-separated with spaces, tabs, newlines and backslashes
// escaped as octal (\040 ...).
function unescapeOctal(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
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
    });
  }
  return out;
}
