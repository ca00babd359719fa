/**
 * The process groups of the commands running right now. A short-lived process (the flexvolume
 * executable) that gives up at its own deadline kills them before it exits: an orphaned
 * `mount.nfs` would otherwise finish the mount later, after kubelet was told it failed.
 * Kept free of imports so the executable's entry can load it at no cost.
 */
const running = new Set<number>();

export function trackChild(pid: number): void {
  running.add(pid);
}

export function untrackChild(pid: number): void {
  running.delete(pid);
}

/** SIGKILLs every tracked process group; returns how many were still running. */
export function killTrackedChildren(): number {
  let killed = 0;
  for (const pid of running) {
    try {
      process.kill(-pid, 'SIGKILL');
      killed++;
    } catch {
      // already gone
    }
  }
  running.clear();
  return killed;
}
