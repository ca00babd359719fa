/**
 * Mount options as `key` or `key=value` text, as the NFS and EFS drivers merge them and as the
 * Rancher stacks' MOUNT_OPTS gives them (src/config-env.ts).
 */

/** `rsize=1048576` -> `rsize`; `hard` -> `hard`. Keys compare without case. */
export function mountOptionKey(option: string): string {
  return option.split('=')[0]!.toLowerCase();
}

/**
 * `vers=` and `nfsvers=` name the NFS protocol version, which stowage keeps in a key of its own
 * (nfs.nfsVersion, the nfsVersion option; EFS speaks 4.1 only) rather than among the options.
 */
export function isNfsVersionOption(option: string): boolean {
  const key = mountOptionKey(option);
  return key === 'vers' || key === 'nfsvers';
}

/** The lists in order, one entry per key: a later list's option replaces an earlier one's. */
export function mergeMountOptions(...lists: readonly (readonly string[])[]): string[] {
  const merged = new Map<string, string>();
  for (const option of lists.flat()) merged.set(mountOptionKey(option), option);
  return [...merged.values()];
}
