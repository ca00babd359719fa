/**
 * What the guest programs (test/e2e/nfs/flex-guest-program.ts, test/e2e/csi/guest-program.ts)
 * observe inside the qemu guest: the mount table as /proc/self/mountinfo says it, and whether a
 * file operation worked. Only node's own modules: the programs are bundled into one file each.
 */
import { readFileSync } from 'node:fs';

export interface MountView {
  mountPoint: string;
  fsType: string;
  source: string;
  /** Per-mount options (the field before the optional fields), e.g. ['ro', 'relatime']. */
  options: string[];
}

export interface FsOutcome {
  ok: boolean;
  /** errno code (EROFS, ENOENT...) when it failed. */
  code?: string;
  /** What was read, when it was a read that succeeded. */
  text?: string;
}

export function mountTable(): MountView[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [left = '', right = ''] = line.split(' - ');
      const f = left.split(' ');
      const [fsType = '', source = ''] = right.split(' ');
      return { mountPoint: unescapeOctal(f[4] ?? ''), fsType, source, options: (f[5] ?? '').split(',') };
    });
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeOctal(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

/** Whether `p` is `dir` or below it. */
export const under = (p: string, dir: string) => p === dir || p.startsWith(`${dir}/`);

/** Mounts a test cares about: NFS ones anywhere, and anything under kubelet's or stowage's dirs. */
export function ourMounts(kubeletDir: string, dataDir: string): MountView[] {
  return mountTable().filter(
    (m) => m.fsType.startsWith('nfs') || under(m.mountPoint, kubeletDir) || under(m.mountPoint, dataDir),
  );
}

/** Runs a file operation; what it returned, or the errno code it failed with. */
export function fsTry(fn: () => string | undefined): FsOutcome {
  try {
    const text = fn();
    return text === undefined ? { ok: true } : { ok: true, text };
  } catch (err) {
    return { ok: false, code: (err as NodeJS.ErrnoException).code ?? (err as Error).message };
  }
}
